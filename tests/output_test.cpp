// Outputs committed as a set (issue 10, items 2, 6, 11): the claimed output folder (a second run
// is refused, a failed run leaves nothing), the set commit (a failing rename at any step keeps the
// old set; a run killed at any step is rolled back by the next run), temporaries of dead runs
// removed, and text inputs that are not regular files or are too large refused.

#include "imgnorm/output.hpp"
#include "output_hooks.hpp"
#include "test_files.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "imgnorm/error.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/npy.hpp"

using namespace imgnorm;
using namespace imgnorm::testing;

namespace {

const std::vector<std::string> kSet = {"images.npy", "labels.npy", "manifest.json"};

// Every entry of `dir` with its contents.
std::map<std::string, std::string> contents(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::directory_iterator(dir))
    m[e.path().filename().string()] = read_bytes(e.path());
  return m;
}

// An old set: three files whose bytes say which run wrote them.
void write_set(const fs::path& dir, const std::string& run) {
  fs::create_directories(dir);
  for (const auto& name : kSet) write_bytes(dir / name, run + " " + name);
}

std::map<std::string, std::string> set_of(const std::string& run, bool labels = true) {
  std::map<std::string, std::string> m;
  for (const auto& name : kSet)
    if (labels || name != "labels.npy") m[name] = run + " " + name;
  return m;
}

// The pid of a process that has exited (and was reaped): no process has it now.
pid_t dead_pid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

// Stages a new set in a claimed folder and commits it (labels only when `labels`).
void commit_new_set(OutputFolder& folder, const std::string& run, bool labels) {
  std::vector<AtomicFile> files;
  files.reserve(3);
  for (const auto& name : {"labels.npy", "manifest.json", "images.npy"}) {
    if (!labels && std::string(name) == "labels.npy") continue;
    files.emplace_back(folder.path(name));
    const std::string text = run + " " + name;
    files.back().write(text.data(), text.size());
  }
  std::vector<AtomicFile*> ptrs;
  for (auto& f : files) ptrs.push_back(&f);
  folder.commit(ptrs);
}

int g_fail_at = -1;   // the rename (0, 1, ...) that fails
int g_renames = 0;    // renames seen
bool g_kill = false;  // kill the process instead of failing
int fault(const char*, const char*) {
  if (g_renames++ != g_fail_at) return 0;
  if (g_kill) raise(SIGKILL);
  return EIO;
}

struct HookGuard {
  HookGuard(int fail_at, bool kill) {
    g_fail_at = fail_at;
    g_renames = 0;
    g_kill = kill;
    detail::commit_rename_hook = fault;
  }
  ~HookGuard() { detail::commit_rename_hook = nullptr; }
};

}  // namespace

TEST(output, a_second_claim_of_the_folder_is_refused_naming_the_holder) {
  TempDir t;
  const std::string dir = t.str("out");
  OutputFolder first(dir, kSet);
  try {
    OutputFolder second(dir, kSet);
    FAIL() << "the folder was claimed twice";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_EQ(std::string(e.what()), dir + ": in use by another imgnorm run (pid " +
                                         std::to_string(getpid()) +
                                         "); wait for it to finish or write elsewhere");
  }
}

TEST(output, the_folder_is_free_again_after_the_run_and_the_lock_file_is_gone) {
  TempDir t;
  const std::string dir = t.str("out");
  { OutputFolder first(dir, kSet); }
  EXPECT_FALSE(fs::exists(dir)) << "a run that committed nothing leaves no folder it created";
  write_set(dir, "old");
  {
    OutputFolder again(dir, kSet);
    commit_new_set(again, "new", true);
  }
  EXPECT_EQ(contents(dir), set_of("new")) << "no lock file, no temporary left";
  { OutputFolder third(dir, kSet); }
  EXPECT_EQ(contents(dir), set_of("new")) << "an existing folder stays";
}

TEST(output, a_missing_parent_is_named) {
  TempDir t;
  try {
    OutputFolder f(t.str("no/such"), kSet);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              t.str("no/such") + ": cannot create it: folder " + t.str("no") + " does not exist");
  }
}

TEST(output, check_existing_needs_force_for_any_member_of_the_set) {
  TempDir t;
  const std::string dir = t.str("out");
  fs::create_directories(dir);
  write_bytes(t.path / "out" / "labels.npy", "stale");
  OutputFolder f(dir, kSet);
  try {
    f.check_existing(false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              dir + "/labels.npy: already exists (use --force to replace it)");
  }
  EXPECT_NO_THROW(f.check_existing(true));
}

TEST(output, a_commit_without_labels_removes_the_old_labels) {
  TempDir t;
  const std::string dir = t.str("out");
  write_set(dir, "old");
  {
    OutputFolder f(dir, kSet);
    commit_new_set(f, "new", false);
  }
  EXPECT_EQ(contents(dir), set_of("new", false));
}

TEST(output, a_failing_rename_at_any_step_keeps_the_old_set) {
  // Renames of a full commit over a full set: marker, 3 old files aside, 3 new files in.
  for (bool labels : {true, false}) {
    for (int step = 0; step < 7; ++step) {
      SCOPED_TRACE("labels " + std::to_string(labels) + ", rename " + std::to_string(step));
      TempDir t;
      const std::string dir = t.str("out");
      write_set(dir, "old");
      if (!labels && step == 6) {  // only 6 renames: this commit succeeds
        {
          OutputFolder f(dir, kSet);
          HookGuard hook(step, false);
          commit_new_set(f, "new", labels);
        }
        EXPECT_EQ(contents(dir), set_of("new", false));
        continue;
      }
      {
        OutputFolder f(dir, kSet);
        HookGuard hook(step, false);
        try {
          commit_new_set(f, "new", labels);
          FAIL() << "the commit did not fail";
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::io);
          EXPECT_NE(std::string(e.what()).find(strerror(EIO)), std::string::npos) << e.what();
        }
      }
      EXPECT_EQ(contents(dir), set_of("old")) << "the old set, nothing else";
    }
  }
}

TEST(output, a_run_killed_during_its_commit_is_rolled_back_by_the_next_run) {
  // Renames: marker, 2 old files aside, 3 new files in.
  for (int step = 0; step < 6; ++step) {
    SCOPED_TRACE("killed before rename " + std::to_string(step));
    TempDir t;
    const std::string dir = t.str("out");
    write_set(dir, "old");
    // A new set whose labels are new (the old set had none): a rollback must remove them.
    fs::remove(t.path / "out" / "labels.npy");
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      OutputFolder f(dir, kSet);
      HookGuard hook(step, true);
      commit_new_set(f, "new", true);
      _exit(3);  // not reached: killed at `step`
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    EXPECT_NE(contents(dir), set_of("old", false)) << "the dead run left something to clean";
    { OutputFolder next(dir, kSet); }
    EXPECT_EQ(contents(dir), set_of("old", false));
  }
}

TEST(output, a_killed_run_whose_commit_was_complete_keeps_the_new_set) {
  TempDir t;
  const std::string dir = t.str("out");
  write_set(dir, "old");
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    OutputFolder f(dir, kSet);
    commit_new_set(f, "new", true);
    raise(SIGKILL);  // before releasing the folder
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  { OutputFolder next(dir, kSet); }
  EXPECT_EQ(contents(dir), set_of("new"));
}

TEST(output, temporaries_of_killed_runs_are_removed_by_the_next_run) {
  TempDir t;
  const std::string dir = t.str("out");
  fs::create_directories(dir);
  // A run killed while writing images.npy (really killed: it holds the folder and a temporary).
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    OutputFolder f(dir, kSet);
    NpyWriter w(f.path("images.npy"), DType::float32, {1000, 64});
    raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  const std::string killed = "images.npy.tmp-" + std::to_string(child) + "-";
  std::size_t temporaries = 0;
  for (const auto& [name, bytes] : contents(dir))
    temporaries += name.rfind(killed, 0) == 0 && bytes.size() > 256000;
  ASSERT_EQ(temporaries, 1u) << "the killed run left its images.npy temporary";
  // Temporaries of a live process (our parent) and files that only look alike stay.
  const std::string live = "manifest.json.tmp-" + std::to_string(getppid()) + "-0";
  const std::string dead = "labels.npy.tmp-" + std::to_string(dead_pid()) + "-7";
  write_bytes(t.path / "out" / live, "x");
  write_bytes(t.path / "out" / dead, "x");
  write_bytes(t.path / "out" / "notes.tmp-1-2", "x");
  { OutputFolder next(dir, kSet); }
  std::vector<std::string> left;
  for (const auto& [name, bytes] : contents(dir)) left.push_back(name);
  EXPECT_EQ(left, (std::vector<std::string>{live, "notes.tmp-1-2"}));
}

TEST(output, check_output_path_removes_temporaries_of_dead_runs) {
  TempDir t;
  const std::string path = t.str("stats.json");
  const std::string dead = path + ".tmp-" + std::to_string(dead_pid()) + "-0";
  const std::string live = path + ".tmp-" + std::to_string(getppid()) + "-0";
  write_bytes(dead, "x");
  write_bytes(live, "x");
  check_output_path(path, false);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));
}

TEST(output, commit_files_keeps_the_old_pair_when_the_second_rename_fails) {
  TempDir t;
  const std::string a = t.str("mean.npy"), b = t.str("stats.json");
  write_bytes(a, "old a");
  write_bytes(b, "old b");
  {
    AtomicFile fa(a), fb(b);
    fa.write("new a", 5);
    fb.write("new b", 5);
    HookGuard hook(3, false);  // b aside, a aside, a in, [b in]
    EXPECT_THROW(commit_files({&fa, &fb}), Error);
  }
  EXPECT_EQ(read_bytes(a), "old a");
  EXPECT_EQ(read_bytes(b), "old b");
  EXPECT_EQ(contents(t.path).size(), 2u) << "no temporary, no old copy left";
}

TEST(output, text_inputs_must_be_regular_files_and_small_enough) {
  alarm(20);  // a regression that blocks on a FIFO fails here instead of hanging
  TempDir t;
  try {
    read_text_file("/dev/zero", kMaxTextFileBytes, "list file", true);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "/dev/zero: not a regular file (a character device)");
  }
  const std::string fifo = t.str("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  try {
    read_text_file(fifo, kMaxTextFileBytes, "stats file");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), fifo + ": not a regular file (a FIFO)");
  }
  try {
    read_text_file(t.str(""), kMaxTextFileBytes, "stats file");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file (a folder)"), std::string::npos);
  }
  // A sparse file one byte over the limit is refused from its size, before it is read.
  const std::string big = t.str("big.json");
  {
    int fd = open(big.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(kMaxTextFileBytes + 1)), 0);
    close(fd);
  }
  try {
    read_text_file(big, kMaxTextFileBytes, "stats file");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::too_large);
    EXPECT_EQ(std::string(e.what()), big + ": larger than 1 GiB, the limit for a stats file");
  }
  // A pipe is read to its end where allowed (a list file), and capped while reading.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "a\nb\n", 4), 4);
  close(fds[1]);
  EXPECT_EQ(read_text_file("/dev/fd/" + std::to_string(fds[0]), 100, "list file", true), "a\nb\n");
  close(fds[0]);
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "0123456789", 10), 10);
  close(fds[1]);
  EXPECT_THROW(read_text_file("/dev/fd/" + std::to_string(fds[0]), 9, "list file", true), Error);
  close(fds[0]);
  alarm(0);
}

namespace {

// A class-folder dataset of `n` small PNGs per class.
std::string png_dataset(const fs::path& root, int n) {
  for (const char* cls : {"a", "b"}) {
    fs::create_directories(root / cls);
    for (int i = 0; i < n; ++i)
      write_png(root / cls / (std::to_string(i) + ".png"), 20, 12, 3, static_cast<unsigned>(i));
  }
  return root.string();
}

NormalizeResult normalize_into(const std::string& data, const std::string& out, bool force,
                               bool labels, const PipelineOptions& options) {
  NormalizeJob job;
  job.spec.mode = Mode::scale;
  job.recipe.size = Size{8, 8};
  job.labels = labels;
  Normalization n(job, data);
  return normalize_to_folder(n, out, force, options);
}

}  // namespace

TEST(output, normalize_force_keeps_the_old_set_when_interrupted_or_when_the_commit_fails) {
  TempDir t;
  const std::string data = png_dataset(t.path / "data", 6);
  const std::string out = t.str("out");
  PipelineOptions one;
  one.threads = 1;
  ASSERT_EQ(normalize_into(data, out, false, true, one).rows, 12u);
  const auto old = contents(out);
  ASSERT_EQ(old.size(), 3u);
  // Interrupted half-way (SIGINT/SIGTERM raise the cancel flag).
  std::atomic<bool> cancel{false};
  PipelineOptions stop = one;
  stop.cancel = &cancel;
  stop.progress = [&](std::size_t done, std::size_t) {
    if (done == 5) cancel = true;
  };
  try {
    normalize_into(data, out, true, false, stop);
    FAIL() << "not interrupted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted);
  }
  EXPECT_EQ(contents(out), old);
  // Every rename of the commit failing in turn (marker, 3 aside, 2 in: without labels).
  for (int step = 0; step < 6; ++step) {
    SCOPED_TRACE("rename " + std::to_string(step));
    HookGuard hook(step, false);
    EXPECT_THROW(normalize_into(data, out, true, false, one), Error);
    EXPECT_EQ(contents(out), old);
  }
  // A new folder whose run fails is removed again.
  {
    HookGuard hook(3, false);  // marker, labels, manifest, [images]
    EXPECT_THROW(normalize_into(data, t.str("fresh"), false, true, one), Error);
  }
  EXPECT_FALSE(fs::exists(t.path / "fresh"));
}
