#pragma once
/// \file dataset.hpp
/// Finding the images of a dataset: a class-folder tree (as torchvision's ImageFolder), a flat
/// folder (one unnamed class), or a list file. Nothing is dropped silently: every file that is not
/// taken is listed in `ignored` with the reason. Also deterministic sampling and sharding.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>
#include "imgnorm/export.hpp"

namespace imgnorm {

/// One image file of the dataset.
struct Entry {
  std::string path;  ///< as found: root joined with the relative path (or the list file's line)
  /// Index into Dataset::classes; -1 for a listed file that did not exist when the list was read
  /// (it is no class: the pipeline skips it, so it never gets a label).
  int label = 0;
};

/// A file (or folder) that was seen but not taken, and why. Reasons from scan_folder: "hidden",
/// "not an image extension", "root-level file", "not a regular file" (fifo, socket, device),
/// "symlink loop", "broken symlink", "unreadable folder: <strerror>", "cannot stat: <strerror>",
/// kOutsideLink ("symlink out of the dataset folder (--follow-links follows it)"), and
/// "same folder as <path>" (a second path to a folder already scanned, through a symlink or a
/// bind mount; <path> is the first one, as in Entry::path).
struct Ignored {
  std::string path;
  std::string reason;
};

struct Dataset {
  std::string root;                  ///< the folder (or list file) given
  std::vector<std::string> classes;  ///< sorted class names; label = index. {""} for a flat folder
  std::vector<Entry> entries;        ///< sorted by (class, relative path) — bytewise order
  std::vector<Ignored> ignored;      ///< sorted by path, bytewise
};

/// The reason of a symlink that scan_folder did not follow because it leads out of the root.
inline constexpr const char* kOutsideLink =
    "symlink out of the dataset folder (--follow-links follows it)";

struct ScanOptions {
  /// Candidate extensions, lower-case without the dot; matched case-insensitively.
  std::vector<std::string> extensions{"jpg", "jpeg", "png", "webp"};
  /// Follow symlinks (to files and folders) whose target lies outside the root folder
  /// (`--follow-links`, Python `follow_links=True`). Off by default: such a link is listed in
  /// `ignored` (kOutsideLink) and not followed. Links that stay inside the root are always
  /// followed. Either way each real folder is scanned once.
  bool follow_links = false;
  /// When it becomes true, the scan (or the reading of a list file) stops with
  /// Error(interrupted, "interrupted"). Checked for every folder entry (every 1024 list lines).
  const std::atomic<bool>* cancel = nullptr;
};

/// Scans `root`. First-level folders are classes (sorted bytewise → label ids); files inside a
/// class folder are found recursively (each real folder once, see below). Hidden
/// files and folders (name starting with '.') are ignored, as are root-level files. A root with no
/// class folders but with image files directly inside is one unnamed class "". Throws Error(io)
/// when `root` is missing or not a folder; an empty result is returned as is (the caller decides).
///
/// Details:
/// - Entry paths are `root` as given joined with the relative path by one '/' ("d/" stays "d/a").
/// - A file is a candidate when the text after its last '.' is in `extensions`, ignoring ASCII
///   case ("x.JPG", "y.Jpeg"); a folder named "x.jpg" is still a folder and is descended into.
/// - Unlike torchvision's ImageFolder (which raises), a class folder with no image is kept: its
///   label stays, so labels match a scan where it has images; the caller reports 0 images.
///   Unlike ImageFolder, hidden first-level folders (".git") are not classes.
/// - Each real folder (device and inode) is scanned once. Real folders are walked first, then the
///   symlinks to folders in the order found, so a folder reached by a real path and by a link is
///   scanned under its real path; a second path to a scanned folder is listed as "same folder as
///   <first path>", or "symlink loop" when that folder contains the link (an ancestor, the root).
///   A root-level link to the root itself is a "symlink loop" and no class.
/// - A symlink (to a file or a folder) whose target lies outside the root (after resolving every
///   link, as realpath) is not followed unless options.follow_links: it is listed as kOutsideLink.
///   A first-level folder is a class whatever its target, so labels do not depend on
///   follow_links; a class whose folder was not scanned has no image.
/// - A symlinked file counts once per path, as a regular file does (a file reached through two
///   links or hard links is two entries, as in find -L and torchvision's ImageFolder).
/// - A hidden folder is reported once and not descended into. A folder that cannot be listed is
///   reported ("unreadable folder: Permission denied") instead of throwing; only the root throws.
/// - When there is no class folder, non-image files in the root are "not an image extension"; a
///   root with neither class folders nor images gives no classes.
IMGNORM_API Dataset scan_folder(const std::string& root, const ScanOptions& options = {});

/// Reads a list file: one path per line (blank lines and lines starting with '#' skipped); a
/// relative path is relative to the list file's folder. The class of a file is the name of its
/// parent folder; classes sorted as in scan_folder. Entries keep the file's order.
///
/// Each line is trimmed of surrounding whitespace (a trailing '\r' included), so a path cannot
/// begin or end with a space. Entry paths are the list file's folder + "/" + the line (absolute
/// lines as written). The parent folder is found lexically on the absolute path ("a/../b/x.jpg" is
/// in "b", "x.jpg" in the list file's folder; "" for a file directly under "/"). Every listed path
/// is kept, whatever its extension (the user named it; decoding sniffs the bytes anyway), so
/// `options.extensions` does not apply, and duplicates are kept; `ignored` stays empty.
/// Each path is stat()ed: one that does not exist (or cannot be reached) is kept as an entry with
/// label -1, so a mistyped line is a skipped file, never a class of its own that would shift the
/// label ids of the classes after it. Throws Error(io) when
/// the list file is missing ("<list>: no such file") or a folder, Error(format) for a NUL byte.
IMGNORM_API Dataset read_list(const std::string& list_file, const ScanOptions& options = {});

/// Indices of a uniform sample without replacement of `k` out of `n` (k <= n), sorted ascending.
/// Deterministic for a seed on every platform (own generator, no std:: distributions): xoshiro256**
/// seeded through splitmix64, Lemire's unbiased bounded integers, Floyd's algorithm (every k-subset
/// equally likely; O(k) memory, or n bits when k >= n/64). Throws Error(invalid_argument) if k > n.
IMGNORM_API std::vector<std::size_t> sample_indices(std::size_t n, std::size_t k,
                                                    std::uint64_t seed);

/// A uniform random permutation of 0..n-1, a function of (seed, stream) only: Fisher–Yates driven
/// by the generator of sample_indices, seeded with seed + stream · 0xd1342543de82ef95 (so each
/// stream — a training epoch — gets its own permutation, the same on every platform).
IMGNORM_API std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed,
                                                 std::uint64_t stream = 0);

/// How many to sample: "500" (a count) or "10%" (a percentage of n, rounded to nearest, at least
/// 1). Throws Error(invalid_argument) for malformed text, 0, or more than 100%. A count above n
/// gives n.
///
/// Grammar: digits, or digits ['.' digits] '%' (no sign, spaces or exponent; at most 9 decimals
/// after trailing zeros are dropped). The percentage is computed exactly in integers, halves
/// rounded up ("10%" of 25 is 3). Any percentage of n = 0 is 0.
IMGNORM_API std::size_t parse_sample_count(const std::string& text, std::size_t n);

/// Keeps entries index % n == i (0 <= i < n), in order. Throws Error(invalid_argument) otherwise
/// ("invalid shard 'i/n': ..."). `classes` and `ignored` are left whole, so labels mean the same in
/// every shard (and every shard reports the same ignored files).
IMGNORM_API void keep_shard(Dataset& dataset, int i, int n);

/// Keeps only the entries at `indices` (strictly increasing, each < entries.size()), in order.
/// Throws Error(invalid_argument), leaving `dataset` unchanged, when they are not.
IMGNORM_API void keep_indices(Dataset& dataset, const std::vector<std::size_t>& indices);

}  // namespace imgnorm
