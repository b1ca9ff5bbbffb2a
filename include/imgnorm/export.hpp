#pragma once
/// \file export.hpp
/// IMGNORM_API marks the declarations that make up libimgnorm's binary interface, as FMT_API does
/// for {fmt}:
///
///     class IMGNORM_API Accumulator { ... };
///     IMGNORM_API Summary summarize(const Accumulator& acc, int ddof = 0, ...);
///
/// The library is compiled with hidden visibility (CMake: CXX_VISIBILITY_PRESET hidden), so a
/// shared libimgnorm exports only what is marked. The macros come from CMake, not from this file:
///
/// - IMGNORM_SHARED: libimgnorm is a shared library (-DBUILD_SHARED_LIBS=ON). A PUBLIC compile
///   definition of imgnorm::imgnorm, so the library, everything linking it and the installed
///   package (imgnormTargets.cmake) all see it. Absent for the static library (the default), and
///   then IMGNORM_API is empty.
/// - IMGNORM_BUILDING: defined (PRIVATE) only while compiling libimgnorm itself. ELF needs the
///   same attribute on both sides; Windows DLLs would need dllexport here and dllimport in users.

#if defined(IMGNORM_SHARED)
#if defined(_WIN32)
#if defined(IMGNORM_BUILDING)
#define IMGNORM_API __declspec(dllexport)
#else
#define IMGNORM_API __declspec(dllimport)
#endif
#else
#define IMGNORM_API __attribute__((visibility("default")))
#endif
#else
#define IMGNORM_API
#endif
