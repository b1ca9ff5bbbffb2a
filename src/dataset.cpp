#include "imgnorm/dataset.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "imgnorm/error.hpp"
#include "imgnorm/output.hpp"

namespace imgnorm {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

bool is_hidden(std::string_view name) { return !name.empty() && name.front() == '.'; }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

/// Lower-case extensions without a leading dot; tolerant of ".JPG" given by a caller.
std::vector<std::string> normalized_extensions(const ScanOptions& options) {
  std::vector<std::string> out;
  out.reserve(options.extensions.size());
  for (const std::string& e : options.extensions) {
    std::string_view v = e;
    if (!v.empty() && v.front() == '.') v.remove_prefix(1);
    if (!v.empty()) out.push_back(ascii_lower(v));
  }
  return out;
}

bool has_image_extension(std::string_view name, const std::vector<std::string>& extensions) {
  std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return false;
  std::string ext = ascii_lower(name.substr(dot + 1));
  return std::find(extensions.begin(), extensions.end(), ext) != extensions.end();
}

/// `dir` joined with `name` using exactly one '/' ("/" + "a" gives "/a", "d/" + "a" gives "d/a").
std::string join(const std::string& dir, std::string_view name) {
  std::string out = dir;
  if (!out.empty() && out.back() != '/') out.push_back('/');
  out.append(name);
  return out;
}

struct DirId {
  dev_t dev;
  ino_t ino;
  bool operator==(const DirId& o) const { return dev == o.dev && ino == o.ino; }
};

enum class Kind { directory, regular, other, broken_link, link_loop, error };

/// What `path` is once symlinks are followed. `d_type` from readdir saves a stat() for plain files
/// (the common case in a dataset of many images).
struct Stat {
  Kind kind = Kind::error;
  DirId id{};
  int err = 0;
};

Stat stat_entry(const std::string& path, unsigned char d_type) {
  Stat s;
  if (d_type == DT_REG) {
    s.kind = Kind::regular;
    return s;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    s.err = errno;
    struct stat lst;
    bool is_link = ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode);
    if (is_link && s.err == ELOOP) {
      s.kind = Kind::link_loop;
    } else if (is_link && (s.err == ENOENT || s.err == ENOTDIR)) {
      s.kind = Kind::broken_link;
    } else {
      s.kind = Kind::error;
    }
    return s;
  }
  s.id = DirId{st.st_dev, st.st_ino};
  if (S_ISDIR(st.st_mode)) {
    s.kind = Kind::directory;
  } else if (S_ISREG(st.st_mode)) {
    s.kind = Kind::regular;
  } else {
    s.kind = Kind::other;
  }
  return s;
}

struct DirEntry {
  std::string name;
  unsigned char d_type;
};

/// Names in `path` (without "." and ".."), sorted bytewise so the walk is deterministic.
/// Returns false with `err` set when the folder cannot be opened or read.
bool list_dir(const std::string& path, std::vector<DirEntry>& out, int& err) {
  out.clear();
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    err = errno;
    return false;
  }
  for (;;) {
    errno = 0;
    const dirent* d = ::readdir(dir);
    if (d == nullptr) {
      err = errno;
      break;
    }
    std::string_view name = d->d_name;
    if (name == "." || name == "..") continue;
    out.push_back(DirEntry{std::string(name), d->d_type});
  }
  ::closedir(dir);
  if (err != 0) return false;
  std::sort(out.begin(), out.end(),
            [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return true;
}

bool is_symlink(const std::string& path, unsigned char d_type) {
  if (d_type == DT_LNK) return true;
  if (d_type != DT_UNKNOWN) return false;
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

/// The absolute path of `path` with every symlink resolved; empty when it cannot be resolved.
std::string real_path(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) return {};
  std::string out(real);
  std::free(real);
  return out;
}

struct DirIdHash {
  std::size_t operator()(const DirId& id) const {
    return std::hash<std::uint64_t>()(static_cast<std::uint64_t>(id.dev) * 0x9e3779b97f4a7c15ULL ^
                                      static_cast<std::uint64_t>(id.ino));
  }
};

/// True when `path` is `prefix` or below it ("a/b" is below "a", "ab" is not).
bool is_below(const std::string& path, const std::string& prefix) {
  if (path.compare(0, prefix.size(), prefix) != 0) return false;
  return path.size() == prefix.size() || prefix.empty() || prefix.back() == '/' ||
         path[prefix.size()] == '/';
}

struct Walker {
  const std::vector<std::string>& extensions;
  const ScanOptions& options;
  Dataset& ds;
  std::string root_real;  // the root with links resolved: what "inside" means
  /// Every folder scanned so far, by device and inode, with the first path it was scanned under.
  /// A second path to one (a symlink, a bind mount) is not scanned again: a tree of links could
  /// otherwise make the walk exponential, or a link to "/" walk the whole file system repeatedly.
  std::unordered_map<DirId, std::string, DirIdHash> seen;
  struct Pending {
    std::string path;
    int label;
  };
  /// Symlinks to folders, scanned after every real folder so that real paths win.
  std::deque<Pending> links;

  void ignore(std::string path, std::string reason) {
    ds.ignored.push_back(Ignored{std::move(path), std::move(reason)});
  }

  void check_cancel() const {
    if (options.cancel && options.cancel->load(std::memory_order_relaxed))
      throw Error(ErrorCode::interrupted, "interrupted");
  }

  /// Whether a link at `path` may be followed: its target is inside the root, or follow_links.
  bool may_follow(const std::string& path) const {
    if (options.follow_links) return true;
    const std::string target = real_path(path);
    return !target.empty() && is_below(target, root_real);
  }

  /// Registers folder `id` reached as `path`; false (and the reason listed) when it was seen.
  bool first_visit(const std::string& path, const DirId& id) {
    auto [it, fresh] = seen.emplace(id, path);
    if (fresh) return true;
    ignore(path, is_below(path, it->second) ? "symlink loop" : "same folder as " + it->second);
    return false;
  }

  /// Adds the images below `dir` (already registered in `seen`) to `label`.
  void walk(const std::string& dir, int label) {
    std::vector<DirEntry> names;
    int err = 0;
    if (!list_dir(dir, names, err)) {
      ignore(dir, "unreadable folder: " + errno_text(err));
      // A folder that failed mid-read still yields nothing: a partial listing would make the
      // dataset depend on where the error struck.
      return;
    }
    for (const DirEntry& e : names) {
      check_cancel();
      std::string path = join(dir, e.name);
      if (is_hidden(e.name)) {
        ignore(std::move(path), "hidden");
        continue;
      }
      const bool link = is_symlink(path, e.d_type);
      Stat s = stat_entry(path, link ? static_cast<unsigned char>(DT_UNKNOWN) : e.d_type);
      if (link && (s.kind == Kind::directory || s.kind == Kind::regular) && !may_follow(path)) {
        ignore(std::move(path), kOutsideLink);
        continue;
      }
      switch (s.kind) {
        case Kind::directory:
          if (link) {
            links.push_back(Pending{std::move(path), label});
          } else if (first_visit(path, s.id)) {
            walk(path, label);
          }
          break;
        case Kind::regular:
          if (has_image_extension(e.name, extensions)) {
            ds.entries.push_back(Entry{std::move(path), label});
          } else {
            ignore(std::move(path), "not an image extension");
          }
          break;
        case Kind::other:
          ignore(std::move(path), "not a regular file");
          break;
        case Kind::broken_link:
          ignore(std::move(path), "broken symlink");
          break;
        case Kind::link_loop:
          ignore(std::move(path), "symlink loop");
          break;
        case Kind::error:
          ignore(std::move(path), "cannot stat: " + errno_text(s.err));
          break;
      }
    }
  }

  /// Scans the folders behind the pending links (and the links found in them), in order.
  void walk_links() {
    while (!links.empty()) {
      check_cancel();
      Pending p = std::move(links.front());
      links.pop_front();
      const Stat s = stat_entry(p.path, DT_UNKNOWN);
      if (s.kind != Kind::directory) {  // changed since it was listed
        ignore(std::move(p.path), "cannot stat: " + errno_text(s.err != 0 ? s.err : ENOTDIR));
        continue;
      }
      if (first_visit(p.path, s.id)) walk(p.path, p.label);
    }
  }
};

/// Name of the folder that holds `path`, found lexically ("./x.jpg" and "a/../b/x.jpg" name real
/// folders) without touching the file system; "" for a file directly under "/".
std::string class_of(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  if (p.is_relative()) {
    std::error_code ec;
    fs::path abs = fs::absolute(p, ec);
    if (!ec) p = abs;
  }
  return p.lexically_normal().parent_path().filename().string();
}

[[noreturn]] void throw_sample_count(const std::string& text, const std::string& why) {
  throw Error(ErrorCode::invalid_argument, "invalid sample count '" + text + "': " + why);
}

/// xoshiro256** (Blackman, Vigna 2018) seeded through splitmix64, as its authors recommend: fully
/// specified, so the same stream on every platform. A bare splitmix64 would not do: its state
/// advances by a constant, so seeds that differ by a multiple of it replay each other's stream.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (std::uint64_t& word : s_) {
      std::uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, range), range >= 1, without modulo bias (Lemire 2019, "Fast random integer
  /// generation in an interval"), written without __int128 so it means the same everywhere.
  std::uint64_t below(std::uint64_t range) {
    assert(range >= 1);
    std::uint64_t hi, lo;
    mul(next(), range, hi, lo);
    if (lo < range) {
      const std::uint64_t threshold = (0 - range) % range;
      while (lo < threshold) mul(next(), range, hi, lo);
    }
    return hi;
  }

 private:
  static void mul(std::uint64_t a, std::uint64_t b, std::uint64_t& hi, std::uint64_t& lo) {
    const std::uint64_t a_lo = a & 0xffffffffULL, a_hi = a >> 32;
    const std::uint64_t b_lo = b & 0xffffffffULL, b_hi = b >> 32;
    const std::uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
    const std::uint64_t mid = (p0 >> 32) + (p1 & 0xffffffffULL) + (p2 & 0xffffffffULL);
    lo = (mid << 32) | (p0 & 0xffffffffULL);
    hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
  }
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  std::uint64_t s_[4];
};

}  // namespace

Dataset scan_folder(const std::string& root, const ScanOptions& options) {
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) throw Error(ErrorCode::io, root + ": no such folder");
    throw Error(ErrorCode::io, root + ": " + errno_text(err));
  }
  if (!S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, root + ": not a folder");

  std::vector<DirEntry> names;
  int err = 0;
  if (!list_dir(root, names, err)) {
    throw Error(ErrorCode::io, root + ": cannot read folder: " + errno_text(err));
  }

  Dataset ds;
  ds.root = root;
  const std::vector<std::string> extensions = normalized_extensions(options);
  const DirId root_id{st.st_dev, st.st_ino};
  Walker w{extensions, options, ds, real_path(root), {}, {}};
  if (w.root_real.empty()) w.root_real = root;
  w.seen.emplace(root_id, root);

  struct ClassDir {
    std::string name;
    DirId id;
    bool link;
    bool scan;  // false: listed in ignored, the class stays without images
  };
  std::vector<ClassDir> class_dirs;  // sorted, as `names` is
  std::vector<std::string> files;    // regular files directly in the root
  for (const DirEntry& e : names) {
    w.check_cancel();
    std::string path = join(root, e.name);
    if (is_hidden(e.name)) {
      w.ignore(std::move(path), "hidden");
      continue;
    }
    const bool link = is_symlink(path, e.d_type);
    Stat s = stat_entry(path, link ? static_cast<unsigned char>(DT_UNKNOWN) : e.d_type);
    switch (s.kind) {
      case Kind::directory:
        // root/link -> root would make the root a class of itself.
        if (s.id == root_id) {
          w.ignore(std::move(path), "symlink loop");
        } else {
          class_dirs.push_back(ClassDir{e.name, s.id, link, true});
        }
        break;
      case Kind::regular:
        if (link && !w.may_follow(path)) {
          w.ignore(std::move(path), kOutsideLink);
        } else {
          files.push_back(e.name);
        }
        break;
      case Kind::other:
        w.ignore(std::move(path), "not a regular file");
        break;
      case Kind::broken_link:
        w.ignore(std::move(path), "broken symlink");
        break;
      case Kind::link_loop:
        w.ignore(std::move(path), "symlink loop");
        break;
      case Kind::error:
        w.ignore(std::move(path), "cannot stat: " + errno_text(s.err));
        break;
    }
  }

  if (!class_dirs.empty()) {
    for (const std::string& f : files) w.ignore(join(root, f), "root-level file");
    // Real class folders first, then linked ones, so that a link to a class folder (or into one)
    // yields to the real path. A class keeps its label even when its folder is not scanned.
    for (bool links : {false, true}) {
      for (ClassDir& c : class_dirs) {
        if (c.link != links) continue;
        const std::string path = join(root, c.name);
        if (c.link && !w.may_follow(path)) {
          w.ignore(path, kOutsideLink);
          c.scan = false;
        } else {
          c.scan = w.first_visit(path, c.id);
        }
      }
    }
    for (bool links : {false, true}) {
      for (std::size_t label = 0; label < class_dirs.size(); ++label) {
        const ClassDir& c = class_dirs[label];
        if (c.link == links && c.scan) w.walk(join(root, c.name), static_cast<int>(label));
      }
    }
    w.walk_links();
    for (const ClassDir& c : class_dirs) ds.classes.push_back(c.name);
  } else {
    for (const std::string& f : files) {
      if (has_image_extension(f, extensions)) {
        ds.entries.push_back(Entry{join(root, f), 0});
      } else {
        w.ignore(join(root, f), "not an image extension");
      }
    }
    if (!ds.entries.empty()) ds.classes.push_back("");
  }

  // The walk visits names sorted per folder, which is not bytewise order of the whole relative path
  // ("a-b" < "a/c" since '-' < '/'); every path of a class shares the same prefix, so comparing
  // full paths compares relative paths.
  std::stable_sort(ds.entries.begin(), ds.entries.end(), [](const Entry& a, const Entry& b) {
    return a.label != b.label ? a.label < b.label : a.path < b.path;
  });
  std::stable_sort(ds.ignored.begin(), ds.ignored.end(),
                   [](const Ignored& a, const Ignored& b) { return a.path < b.path; });
  return ds;
}

Dataset read_list(const std::string& list_file, const ScanOptions& options) {
  struct stat st;
  if (::stat(list_file.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) throw Error(ErrorCode::io, list_file + ": no such file");
    throw Error(ErrorCode::io, list_file + ": " + errno_text(err));
  }
  if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::io, list_file + ": is a folder, not a list file");
  // A file or a pipe (`--list <(find ...)`), at most kMaxTextFileBytes; never a device.
  std::istringstream in(read_text_file(list_file, kMaxTextFileBytes, "list file", true));

  // Relative lines are relative to the list file's folder; "list.txt" means the current folder.
  const std::size_t slash = list_file.rfind('/');
  const std::string base =
      slash == std::string::npos ? std::string() : list_file.substr(0, slash + 1);

  Dataset ds;
  ds.root = list_file;
  std::vector<std::optional<std::string>> entry_class;
  std::string line;
  std::size_t line_no = 0;
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  while (std::getline(in, line)) {
    ++line_no;
    if (line_no % 1024 == 0 && options.cancel && options.cancel->load(std::memory_order_relaxed))
      throw Error(ErrorCode::interrupted, "interrupted");
    std::string_view v = line;
    const std::size_t first = v.find_first_not_of(kSpace);
    if (first == std::string_view::npos) continue;
    v = v.substr(first, v.find_last_not_of(kSpace) - first + 1);
    if (v.front() == '#') continue;
    if (v.find('\0') != std::string_view::npos) {
      throw Error(ErrorCode::format,
                  list_file + ": line " + std::to_string(line_no) + ": NUL byte in path");
    }
    std::string path = v.front() == '/' ? std::string(v) : base + std::string(v);
    // A path that names nothing is no class: a typo must not shift the labels after it.
    struct stat fst;
    const bool exists = ::stat(path.c_str(), &fst) == 0;
    entry_class.push_back(exists ? std::optional<std::string>(class_of(path)) : std::nullopt);
    ds.entries.push_back(Entry{std::move(path), 0});
  }
  if (in.bad()) throw Error(ErrorCode::io, list_file + ": read error");

  for (const auto& c : entry_class)
    if (c) ds.classes.push_back(*c);
  std::sort(ds.classes.begin(), ds.classes.end());
  ds.classes.erase(std::unique(ds.classes.begin(), ds.classes.end()), ds.classes.end());
  for (std::size_t i = 0; i < ds.entries.size(); ++i) {
    if (!entry_class[i]) {
      ds.entries[i].label = -1;
      continue;
    }
    auto it = std::lower_bound(ds.classes.begin(), ds.classes.end(), *entry_class[i]);
    ds.entries[i].label = static_cast<int>(it - ds.classes.begin());
  }
  return ds;
}

std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed, std::uint64_t stream) {
  Rng rng(seed + stream * 0xd1342543de82ef95ULL);
  std::vector<std::size_t> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = i;
  for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng.below(i)]);
  return p;
}

std::vector<std::size_t> sample_indices(std::size_t n, std::size_t k, std::uint64_t seed) {
  if (k > n) {
    throw Error(ErrorCode::invalid_argument,
                "cannot sample " + std::to_string(k) + " of " + std::to_string(n) + " entries");
  }
  std::vector<std::size_t> out;
  if (k == n) {
    out.resize(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = i;
    return out;
  }
  // Floyd's algorithm: k draws, every k-subset equally likely. Which set records membership does
  // not change the draws, so the result is the same with the bitmap (dense samples, n bits) or
  // the hash set (sparse samples, O(k) memory).
  Rng rng(seed);
  out.reserve(k);
  const bool dense = n / 64 <= k;
  if (dense) {
    std::vector<bool> taken(n, false);
    for (std::size_t j = n - k; j < n; ++j) {
      const std::size_t t = static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(j) + 1));
      taken[taken[t] ? j : t] = true;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (taken[i]) out.push_back(i);
    }
  } else {
    std::unordered_set<std::size_t> taken;
    taken.reserve(k);
    for (std::size_t j = n - k; j < n; ++j) {
      const std::size_t t = static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(j) + 1));
      const std::size_t pick = taken.count(t) ? j : t;
      taken.insert(pick);
      out.push_back(pick);
    }
    std::sort(out.begin(), out.end());
  }
  assert(out.size() == k);
  return out;
}

std::size_t parse_sample_count(const std::string& text, std::size_t n) {
  constexpr const char* kExpected = "expected a count such as 500 or a percentage such as 10%";
  if (text.empty()) throw_sample_count(text, kExpected);
  std::string_view v = text;
  const bool percent = v.back() == '%';
  if (percent) v.remove_suffix(1);
  const std::size_t dot = v.find('.');
  std::string_view int_part = v.substr(0, dot);
  std::string_view frac_part =
      dot == std::string_view::npos ? std::string_view() : v.substr(dot + 1);
  auto all_digits = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!all_digits(int_part) ||
      (dot != std::string_view::npos && (!percent || !all_digits(frac_part)))) {
    throw_sample_count(text, kExpected);
  }

  // Saturating: a count too large for size_t is still just "more than n".
  std::uint64_t whole = 0;
  for (char c : int_part) {
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    whole = whole > (UINT64_MAX - d) / 10 ? UINT64_MAX : whole * 10 + d;
  }

  if (!percent) {
    if (whole == 0) throw_sample_count(text, "must be at least 1");
    return whole >= n ? n : static_cast<std::size_t>(whole);
  }

  // Exact decimal arithmetic: p% = mantissa / 10^decimals, count = n * mantissa / (100 * 10^dec),
  // rounded half up, so "12.5%" gives the same answer on every platform.
  while (!frac_part.empty() && frac_part.back() == '0') frac_part.remove_suffix(1);
  constexpr std::size_t kMaxDecimals = 9;
  if (frac_part.size() > kMaxDecimals) throw_sample_count(text, "at most 9 decimals");
  if (whole > 100) throw_sample_count(text, "more than 100%");
  unsigned __int128 mantissa = whole;
  unsigned __int128 scale = 100;
  for (char c : frac_part) {
    mantissa = mantissa * 10 + static_cast<unsigned>(c - '0');
    scale *= 10;
  }
  if (mantissa == 0) throw_sample_count(text, "must be more than 0%");
  if (mantissa > scale) throw_sample_count(text, "more than 100%");
  const unsigned __int128 count =
      (static_cast<unsigned __int128>(n) * mantissa + scale / 2) / scale;
  if (n == 0) return 0;
  return count == 0 ? 1 : static_cast<std::size_t>(count);
}

void keep_shard(Dataset& dataset, int i, int n) {
  if (n < 1 || i < 0 || i >= n) {
    throw Error(ErrorCode::invalid_argument, "invalid shard '" + std::to_string(i) + "/" +
                                                 std::to_string(n) +
                                                 "': need n >= 1 and 0 <= i < n");
  }
  std::vector<Entry> kept;
  const std::size_t ni = static_cast<std::size_t>(n), ii = static_cast<std::size_t>(i);
  kept.reserve(dataset.entries.size() / ni + 1);
  for (std::size_t k = ii; k < dataset.entries.size(); k += ni) {
    kept.push_back(std::move(dataset.entries[k]));
  }
  dataset.entries = std::move(kept);
}

void keep_indices(Dataset& dataset, const std::vector<std::size_t>& indices) {
  // Checked before anything moves, so a bad call leaves the dataset as it was.
  for (std::size_t k = 0; k < indices.size(); ++k) {
    if (indices[k] >= dataset.entries.size() || (k > 0 && indices[k] <= indices[k - 1])) {
      throw Error(ErrorCode::invalid_argument,
                  "keep_indices: indices must be increasing and below " +
                      std::to_string(dataset.entries.size()));
    }
  }
  std::vector<Entry> kept;
  kept.reserve(indices.size());
  for (std::size_t index : indices) kept.push_back(std::move(dataset.entries[index]));
  dataset.entries = std::move(kept);
}

}  // namespace imgnorm
