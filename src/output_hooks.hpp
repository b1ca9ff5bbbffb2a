#pragma once
// A fault-injection point of the set commit (src/output.cpp), for tests only: when set, it is
// called before each rename of a commit (marker, old files aside, new files in) and a non-zero
// return is taken as that rename failing with this errno. Tests also use it to kill the process
// half-way through a commit.

namespace imgnorm::detail {

extern int (*commit_rename_hook)(const char* from, const char* to);

}  // namespace imgnorm::detail
