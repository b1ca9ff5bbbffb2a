// imgnorm._core: the pybind11 extension. It converts types, releases the GIL and calls the library;
// it computes nothing of its own (the jobs are in include/imgnorm/). The keyword-rich public API,
// the progress bar and the torchvision/Keras adapters are in python/imgnorm/__init__.py.

#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "imgnorm/error.hpp"
#include "imgnorm/loader.hpp"
#include "imgnorm/normalize.hpp"
#include "imgnorm/output.hpp"
#include "imgnorm/pipeline.hpp"
#include "imgnorm/stats_job.hpp"

namespace py = pybind11;
using namespace imgnorm;

namespace {

// ---- errors -------------------------------------------------------------------------------------

PyObject* g_error = nullptr;           // imgnorm.Error(Exception)
PyObject* g_argument_error = nullptr;  // imgnorm.ArgumentError(Error, ValueError)
PyObject* g_file_error = nullptr;      // imgnorm.FileError(Error, OSError)

void raise_error(const Error& e) {
  if (e.code() == ErrorCode::interrupted) {
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    return;
  }
  const bool argument = e.code() == ErrorCode::invalid_argument || e.code() == ErrorCode::empty;
  // Running out of memory, or over a limit (--max-memory, --max-pixels, 2^48 pixels), is not about
  // a broken file nor a bad argument: the base class (docs/design.md, "Whitening loose ends").
  const bool limit = e.code() == ErrorCode::out_of_memory || e.code() == ErrorCode::too_large;
  PyObject* type = argument ? g_argument_error : limit ? g_error : g_file_error;
  // One line, valid UTF-8: the CLI's message (names that are not UTF-8 shown as \xNN).
  PyObject* inst = PyObject_CallFunction(type, "s", printable(e.what()).c_str());
  if (!inst) return;
  PyObject* code = PyUnicode_FromString(to_string(e.code()));
  PyObject_SetAttrString(inst, "code", code);
  Py_XDECREF(code);
  PyErr_SetObject(type, inst);
  Py_DECREF(inst);
}

void warn(const std::string& message, int stacklevel) {
  if (PyErr_WarnEx(PyExc_UserWarning, printable(message).c_str(), stacklevel) != 0)
    throw py::error_already_set();
}

// ---- names: bytes in the library, str in Python (os.fsdecode / os.fsencode) -------------------

// A path argument (str, bytes or os.PathLike) as the bytes of the file name (os.fsencode).
std::string fs_path(const py::handle& path) {
  PyObject* bytes = nullptr;
  if (PyUnicode_FSConverter(path.ptr(), &bytes) == 0) throw py::error_already_set();
  const auto owner = py::reinterpret_steal<py::bytes>(bytes);
  return std::string(owner);
}

// A name from the library (bytes, maybe not UTF-8) as Python's str for it (os.fsdecode).
py::str fs_str(const std::string& name) {
  PyObject* s = PyUnicode_DecodeFSDefaultAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

py::list fs_list(const std::vector<std::string>& names) {
  py::list l;
  for (const auto& n : names) l.append(fs_str(n));
  return l;
}

// ---- running a job: GIL released, Ctrl-C and progress handled by the calling thread
// --------------

struct Progress {
  std::atomic<std::size_t> done{0}, total{0};
};

// Runs `job(cancel, progress)` on a worker thread while this thread (holding the GIL between
// waits) polls for signals every 50 ms and reports progress to `on_progress(done, total)`. Ctrl-C
// raises the cancel flag, waits for the job to stop (it removes its temporaries) and raises
// KeyboardInterrupt. Library errors become imgnorm exceptions.
template <typename Result, typename Job>
Result run_job(Job job, const py::object& on_progress) {
  std::atomic<bool> cancel{false};
  Progress progress;
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;
  std::optional<Result> result;
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      result.emplace(job(&cancel, &progress));
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(m);
    finished = true;
    cv.notify_all();
  });
  bool interrupted = false;
  std::optional<py::error_already_set> python_error;
  std::size_t reported = static_cast<std::size_t>(-1);
  while (true) {
    bool done;
    {
      py::gil_scoped_release release;
      std::unique_lock<std::mutex> lock(m);
      cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return finished; });
      done = finished;
    }
    if (!interrupted && !python_error && PyErr_CheckSignals() != 0) {
      python_error.emplace();  // fetches the KeyboardInterrupt (or the handler's exception)
      interrupted = true;
      cancel.store(true);
    }
    if (!on_progress.is_none() && !python_error && progress.done.load() != reported) {
      reported = progress.done.load();
      try {
        on_progress(reported, progress.total.load());
      } catch (py::error_already_set& e) {
        python_error.emplace(std::move(e));
        cancel.store(true);
      }
    }
    if (done) break;
  }
  {
    py::gil_scoped_release release;
    worker.join();
  }
  if (python_error) throw std::move(*python_error);
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

PipelineOptions options_for(int threads, bool allow_truncated, const std::atomic<bool>* cancel,
                            Progress* progress, std::uint64_t max_memory = 0) {
  PipelineOptions o;
  o.threads = threads;
  o.max_memory = max_memory;
  o.allow_truncated = allow_truncated;
  o.cancel = cancel;
  o.progress = [progress](std::size_t done, std::size_t total) {
    progress->total.store(total);
    progress->done.store(done);
  };
  return o;
}

// ---- numpy --------------------------------------------------------------------------------------

// A numpy array that owns `bytes` through a capsule: no copy, no other owner.
py::array owning_array(std::vector<std::uint8_t>&& bytes, const py::dtype& dtype,
                       std::vector<py::ssize_t> shape) {
  auto* owner = new std::vector<std::uint8_t>(std::move(bytes));
  py::capsule base(owner, [](void* p) { delete static_cast<std::vector<std::uint8_t>*>(p); });
  return py::array(dtype, shape, {}, owner->data(), base);
}

py::dtype numpy_dtype(DType d) { return py::dtype(to_string(d)); }

DType dtype_of(const py::array& a) {
  if (a.dtype().is(py::dtype::of<std::uint8_t>())) return DType::uint8;
  if (a.dtype().is(py::dtype::of<float>())) return DType::float32;
  if (a.dtype().is(py::dtype::of<double>())) return DType::float64;
  throw Error(ErrorCode::invalid_argument,
              "array dtype " + py::str(a.dtype()).cast<std::string>() +
                  " is not supported (uint8, or float32/float64 in 0-255)");
}

// An ImageArray over a C-contiguous numpy array (N,H,W,C) or (N,H,W) (gray); the caller keeps the
// array alive.
ImageArray array_view(const py::array& a, const std::string& name) {
  const DType dt = dtype_of(a);
  if (a.ndim() != 3 && a.ndim() != 4)
    throw Error(ErrorCode::invalid_argument,
                name + ": expected an NHWC array (N,H,W,C) or (N,H,W), got " +
                    std::to_string(a.ndim()) + " dimensions");
  const int channels = a.ndim() == 4 ? static_cast<int>(a.shape(3)) : 1;
  try {
    return ImageArray::from_memory(a.data(), dt, static_cast<std::uint64_t>(a.shape(0)),
                                   static_cast<int>(a.shape(1)), static_cast<int>(a.shape(2)),
                                   channels, name);
  } catch (const Error& e) {
    // A bad shape of an array in memory is a bad argument, not a bad file (no rows stays empty).
    if (e.code() == ErrorCode::empty) throw;
    throw Error(ErrorCode::invalid_argument, e.what());
  }
}

// ---- Stats --------------------------------------------------------------------------------------

struct PyStats {
  std::shared_ptr<const StatsFile> file;
  Summary summary;
  explicit PyStats(StatsFile f)
      : file(std::make_shared<const StatsFile>(std::move(f))),
        summary(summarize(file->acc, file->ddof, file->sample ? &*file->sample : nullptr)) {}
};

template <typename F>
py::array_t<double> per_channel(const PyStats& s, F f) {
  py::array_t<double> out(static_cast<py::ssize_t>(s.summary.channel.size()));
  auto v = out.mutable_unchecked<1>();
  for (std::size_t c = 0; c < s.summary.channel.size(); ++c) v(c) = f(s.summary.channel[c]);
  return out;
}

py::dict recipe_dict(const Recipe& r) {
  py::dict d;
  d["size"] = py::make_tuple(r.size.width, r.size.height);
  d["resize"] = to_string(r.resize);
  d["interp"] = to_string(r.interp);
  d["channels"] = to_string(r.channels);
  d["pad_value"] = static_cast<int>(r.pad_value);
  d["exact_decode"] = r.exact_decode;
  d["max_pixels"] = r.max_pixels;
  d["alpha"] = to_string(r.alpha);
  return d;
}

py::object interval_array(const PyStats& s, bool mean) {
  const auto& ch = s.summary.channel;
  if (ch.empty() || !(mean ? ch[0].mean_ci : ch[0].std_ci)) return py::none();
  py::array_t<double> out({static_cast<py::ssize_t>(ch.size()), py::ssize_t(2)});
  auto v = out.mutable_unchecked<2>();
  for (std::size_t c = 0; c < ch.size(); ++c) {
    const Interval& i = mean ? *ch[c].mean_ci : *ch[c].std_ci;
    v(c, 0) = i.lo;
    v(c, 1) = i.hi;
  }
  return out;
}

// Per-channel numbers of a Summary, as (C,) float64 arrays.
void bind_stats_values(py::class_<PyStats, std::shared_ptr<PyStats>>& c) {
  static const std::pair<const char*, double ChannelSummary::*> kDoubles[] = {
      {"mean", &ChannelSummary::mean},
      {"std", &ChannelSummary::std},
      {"variance", &ChannelSummary::variance},
      {"mean_unit", &ChannelSummary::mean_unit},
      {"std_unit", &ChannelSummary::std_unit},
      {"median", &ChannelSummary::median},
      {"mean_image_std", &ChannelSummary::mean_image_std}};
  for (const auto& [name, member] : kDoubles)
    c.def_property_readonly(name, [member = member](const PyStats& s) {
      return per_channel(s, [member](const ChannelSummary& ch) { return ch.*member; });
    });
  static const std::pair<const char*, int ChannelSummary::*> kInts[] = {
      {"min", &ChannelSummary::min}, {"max", &ChannelSummary::max}};
  for (const auto& [name, member] : kInts)
    c.def_property_readonly(name, [member = member](const PyStats& s) {
      return per_channel(s, [member](const ChannelSummary& ch) { return double(ch.*member); });
    });
  // The C×C matrices and the C eigenvalues of the Summary.
  struct Array {
    const char* name;
    std::vector<double> Summary::*member;
    bool square;
  };
  static const Array kArrays[] = {{"covariance", &Summary::covariance, true},
                                  {"eigenvectors", &Summary::eigenvectors, true},
                                  {"eigenvalues", &Summary::eigenvalues, false}};
  for (const Array& a : kArrays)
    c.def_property_readonly(a.name, [a](const PyStats& s) {
      const std::vector<double>& v = s.summary.*a.member;
      const py::ssize_t n = s.summary.channels;
      py::array_t<double> out = a.square ? py::array_t<double>({n, n}) : py::array_t<double>(n);
      std::copy(v.begin(), v.end(), out.mutable_data());
      return out;
    });
  c.def_property_readonly("percentiles", [](const PyStats& s) {
    const auto& ch = s.summary.channel;
    py::array_t<double> out({py::ssize_t(ch.size()), py::ssize_t(4)});
    auto v = out.mutable_unchecked<2>();
    for (std::size_t k = 0; k < ch.size(); ++k)
      for (int i = 0; i < 4; ++i) v(k, i) = ch[k].percentiles[i];
    return out;
  });
  c.def_property_readonly("histogram", [](const PyStats& s) {
    const int n = s.file->acc.channels();
    py::array_t<std::uint64_t> out({py::ssize_t(n), py::ssize_t(256)});
    for (int ch = 0; ch < n; ++ch)
      std::copy(s.file->acc.histogram(ch).begin(), s.file->acc.histogram(ch).end(),
                out.mutable_data() + 256 * ch);
    return out;
  });
  c.def_property_readonly("mean_image", [](const PyStats& s) -> py::object {
    if (s.file->acc.pixel_sums().empty()) return py::none();
    const std::vector<double> m = mean_image(s.file->acc);
    const Size sz = s.file->acc.mean_image_size();
    std::vector<std::uint8_t> bytes(m.size() * sizeof(double));
    std::memcpy(bytes.data(), m.data(), bytes.size());
    return owning_array(std::move(bytes), py::dtype::of<double>(),
                        {sz.height, sz.width, s.file->acc.channels()});
  });
  c.def_property_readonly("pixel_covariance", [](const PyStats& s) -> py::object {
    const PixelCovariance& pc = s.file->acc.pixel_covariance();
    if (!pc.enabled()) return py::none();
    const std::vector<double> m = pc.moments();
    std::vector<std::uint8_t> bytes(m.size() * sizeof(double));
    std::memcpy(bytes.data(), m.data(), bytes.size());
    const auto n = static_cast<py::ssize_t>(pc.dimension() + 1);
    return owning_array(std::move(bytes), py::dtype::of<double>(), {n, n});
  });
  // The K×K patch moments (stats --patch K), finalized by the library as --mode zca-patch uses
  // them: the mean as (K, K, C), the covariance D×D over its flattened order, the stats' ddof.
  c.def_property_readonly("patch", [](const PyStats& s) -> py::object {
    if (s.file->acc.patch_size() == 0) return py::none();
    return py::int_(s.file->acc.patch_size());
  });
  c.def_property_readonly("patch_count", [](const PyStats& s) -> py::object {
    if (s.file->acc.patch_size() == 0) return py::none();
    return py::int_(s.file->acc.patch_count());
  });
  c.def_property_readonly("patch_mean", [](const PyStats& s) -> py::object {
    if (s.file->acc.patch_size() == 0 || s.file->acc.patch_count() == 0) return py::none();
    const PatchSummary p = summarize_patches(s.file->acc, 0);  // the mean has no ddof
    py::array_t<double> out({py::ssize_t(p.size), py::ssize_t(p.size), py::ssize_t(p.channels)});
    std::copy(p.mean.begin(), p.mean.end(), out.mutable_data());
    return out;
  });
  c.def_property_readonly("patch_covariance", [](const PyStats& s) -> py::object {
    if (s.file->acc.patch_size() == 0 ||
        s.file->acc.patch_count() <= static_cast<std::uint64_t>(s.file->ddof))
      return py::none();
    const PatchSummary p = summarize_patches(s.file->acc, s.file->ddof);
    const auto d = static_cast<py::ssize_t>(p.mean.size());
    py::array_t<double> out({d, d});
    std::copy(p.covariance.begin(), p.covariance.end(), out.mutable_data());
    return out;
  });
  c.def_property_readonly("mean_ci", [](const PyStats& s) { return interval_array(s, true); });
  c.def_property_readonly("std_ci", [](const PyStats& s) { return interval_array(s, false); });
}

// What the statistics cover: counts, classes, files, recipe, sample, shard, covers.
void bind_stats_counts(py::class_<PyStats, std::shared_ptr<PyStats>>& c) {
  c.def_property_readonly("images", [](const PyStats& s) { return s.file->acc.images(); })
      .def_property_readonly("pixels", [](const PyStats& s) { return s.file->acc.pixels(); })
      .def_property_readonly("channels", [](const PyStats& s) { return s.file->acc.channels(); })
      .def_property_readonly("channel_order",
                             [](const PyStats& s) { return to_string(s.file->recipe.channels); })
      .def_property_readonly("ddof", [](const PyStats& s) { return s.file->ddof; })
      .def_property_readonly("classes", [](const PyStats& s) { return fs_list(s.file->classes); })
      .def_property_readonly("class_images", [](const PyStats& s) { return s.file->class_images; })
      .def_property_readonly("files_found", [](const PyStats& s) { return s.file->files_found; })
      .def_property_readonly("source", [](const PyStats& s) { return fs_str(s.file->source); })
      .def_property_readonly("tool_version", [](const PyStats& s) { return s.file->tool_version; })
      .def_property_readonly("recipe", [](const PyStats& s) { return recipe_dict(s.file->recipe); })
      .def_property_readonly(
          "shard",
          [](const PyStats& s) { return py::make_tuple(s.file->shard_index, s.file->shard_count); })
      .def_property_readonly("covers",
                             [](const PyStats& s) {
                               py::list l;
                               for (const Coverage& c : s.file->covers) {
                                 py::list shards;
                                 for (const Shard& sh : c.shards)
                                   shards.append(py::make_tuple(sh.index, sh.count));
                                 py::dict d;
                                 d["selection"] = c.selection;
                                 d["files"] = c.files;
                                 d["shards"] = shards;
                                 l.append(d);
                               }
                               return l;
                             })
      .def_property_readonly("sample",
                             [](const PyStats& s) -> py::object {
                               if (!s.file->sample) return py::none();
                               const SampleInfo& i = *s.file->sample;
                               py::dict d;
                               d["population"] = i.population;
                               d["sampled"] = i.sampled;
                               d["seed"] = i.seed;
                               d["spec"] = i.spec;
                               return d;
                             })
      .def_property_readonly("skipped",
                             [](const PyStats& s) {
                               py::list l;
                               for (const auto& k : s.file->skipped)
                                 l.append(py::make_tuple(fs_str(k.path), fs_str(k.reason)));
                               return l;
                             })
      .def_property_readonly("ignored", [](const PyStats& s) {
        py::list l;
        for (const auto& k : s.file->ignored)
          l.append(py::make_tuple(fs_str(k.path), fs_str(k.reason)));
        return l;
      });
}

void bind_stats(py::module_& m) {
  py::class_<PyStats, std::shared_ptr<PyStats>> c(m, "Stats");
  c.def_static(
       "load", [](const py::object& path) { return PyStats(read_stats_file(fs_path(path))); },
       py::arg("path"))
      .def_static(
          "from_json", [](const std::string& text) { return PyStats(stats_from_json(text)); },
          py::arg("text"))
      .def("to_json", [](const PyStats& s) { return to_json(*s.file); })
      .def(
          "save",
          [](const PyStats& s, const py::object& path, bool force) {
            // With a pixel covariance, its sidecar goes beside stats.json (as imgnorm stats -o).
            const bool pixcov = s.file->acc.pixel_covariance().enabled();
            const StatsOutputs o{fs_path(path), "", force, pixcov};
            check_outputs(o);
            write_outputs(*s.file, o);
          },
          py::arg("path"), py::arg("force") = false)
      // stats.json's text; with whole-image moments (kept beside stats.json in a sidecar) the
      // bytes of to_bytes(), which carry them too.
      .def(py::pickle(
          [](const PyStats& s) -> py::object {
            if (!s.file->acc.pixel_covariance().enabled()) return py::str(to_json(*s.file));
            const std::vector<std::uint8_t> b = to_bytes(*s.file);
            return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
          },
          [](const py::object& state) {
            if (py::isinstance<py::bytes>(state)) {
              const std::string b = state.cast<std::string>();
              return PyStats(stats_from_bytes(std::vector<std::uint8_t>(b.begin(), b.end())));
            }
            return PyStats(stats_from_json(state.cast<std::string>()));
          }));
  bind_stats_values(c);
  bind_stats_counts(c);
}

// ---- recipe and jobs from keywords --------------------------------------------------------------

RecipeOverrides overrides_from(const py::dict& kw) {
  RecipeOverrides o;
  auto get = [&](const char* k) -> py::object {
    return kw.contains(k) && !kw[k].is_none() ? py::reinterpret_borrow<py::object>(kw[k])
                                              : py::object();
  };
  if (auto v = get("size")) {
    if (py::isinstance<py::int_>(v)) {
      const int n = v.cast<int>();
      o.size = parse_size(std::to_string(n));
    } else if (py::isinstance<py::str>(v)) {
      o.size = parse_size(v.cast<std::string>());
    } else {
      auto t = v.cast<std::pair<int, int>>();  // (width, height)
      o.size = parse_size(std::to_string(t.first) + "x" + std::to_string(t.second));
    }
  }
  if (auto v = get("resize")) o.resize = parse_resize_mode(v.cast<std::string>());
  if (auto v = get("interp")) o.interp = parse_interp(v.cast<std::string>());
  if (auto v = get("channels")) o.channels = parse_channel_order(v.cast<std::string>());
  if (auto v = get("pad_value")) {
    const int p = v.cast<int>();
    if (p < 0 || p > 255) throw Error(ErrorCode::invalid_argument, "pad_value must be 0-255");
    o.pad_value = static_cast<std::uint8_t>(p);
  }
  if (auto v = get("exact_decode")) o.exact_decode = v.cast<bool>();
  if (auto v = get("max_pixels")) {
    const auto n = v.cast<long long>();
    if (n < 1) throw Error(ErrorCode::invalid_argument, "max_pixels must be positive");
    o.max_pixels = static_cast<std::uint64_t>(n);
  }
  if (auto v = get("alpha")) {
    if (py::isinstance<py::str>(v)) {
      o.alpha = parse_alpha(v.cast<std::string>());
    } else {
      auto t = v.cast<std::tuple<int, int, int>>();  // (R, G, B)
      o.alpha = parse_alpha(std::to_string(std::get<0>(t)) + "," + std::to_string(std::get<1>(t)) +
                            "," + std::to_string(std::get<2>(t)));
    }
  }
  return o;
}

NormalizeJob job_from(const py::dict& kw) {
  NormalizeJob job;
  TransformSpec& spec = job.spec;
  auto has = [&](const char* k) { return kw.contains(k) && !kw[k].is_none(); };
  std::string mode = has("mode") ? kw["mode"].cast<std::string>() : "standardize";
  if (mode.rfind("preset:", 0) == 0) mode = mode.substr(7);
  spec.mode = parse_mode(mode);
  if (has("unit")) {
    spec.unit = kw["unit"].cast<int>();
    job.unit_given = true;
  }
  if (has("eps")) spec.eps = kw["eps"].cast<double>();
  if (has("patch")) spec.patch = kw["patch"].cast<int>();
  if (has("components")) spec.components = kw["components"].cast<int>();
  if (has("whiten")) spec.whiten = kw["whiten"].cast<bool>();
  if (has("range")) spec.range = kw["range"].cast<std::pair<double, double>>();
  if (has("mean")) spec.mean = kw["mean"].cast<std::vector<double>>();
  if (has("std")) spec.std = kw["std"].cast<std::vector<double>>();
  if (has("divide_std")) spec.mean_image_std = kw["divide_std"].cast<bool>();
  if (has("matrix")) spec.matrix = kw["matrix"].cast<std::vector<double>>();
  if (has("stats")) {
    const py::object s = kw["stats"];
    if (py::isinstance<PyStats>(s))
      job.stats = *s.cast<const PyStats&>().file;
    else
      job.stats_path = fs_path(s);
  }
  if (has("fit")) job.fit = kw["fit"].cast<bool>();
  if (has("save_stats")) job.save_stats = fs_path(kw["save_stats"]);
  if (has("ddof")) job.ddof = kw["ddof"].cast<int>();
  job.recipe = overrides_from(kw);
  job.recipe.channels.reset();  // normalize's `channels` is the output order
  if (has("channels")) job.channels = parse_channel_order(kw["channels"].cast<std::string>());
  if (has("layout")) job.layout = parse_layout(kw["layout"].cast<std::string>());
  if (has("dtype")) job.dtype = parse_dtype(kw["dtype"].cast<std::string>());
  if (has("labels")) job.labels = kw["labels"].cast<bool>();
  if (has("mean_image")) job.mean_image_path = fs_path(kw["mean_image"]);
  return job;
}

int int_kw(const py::dict& kw, const char* k, int def) {
  return kw.contains(k) && !kw[k].is_none() ? kw[k].cast<int>() : def;
}
bool bool_kw(const py::dict& kw, const char* k) {
  return kw.contains(k) && !kw[k].is_none() && kw[k].cast<bool>();
}
// max_memory: bytes (int) or a size such as "2G"; None or absent: the library's default.
std::uint64_t memory_kw(const py::dict& kw) {
  if (!kw.contains("max_memory") || kw["max_memory"].is_none()) return 0;
  const py::object v = kw["max_memory"];
  if (py::isinstance<py::bool_>(v) || !(py::isinstance<py::int_>(v) || py::isinstance<py::str>(v)))
    throw Error(ErrorCode::invalid_argument, "max_memory: give bytes (int) or a size such as '2G'");
  return parse_memory_size(py::str(v).cast<std::string>(), "max_memory");
}

// The scan options of the keywords (follow_links) with the job's cancel flag.
ScanOptions scan_from(const py::dict& kw, const std::atomic<bool>* cancel) {
  ScanOptions o;
  o.follow_links = bool_kw(kw, "follow_links");
  o.cancel = cancel;
  return o;
}

// ---- stats / merge ------------------------------------------------------------------------------

PyStats py_stats(const py::object& dataset, const py::dict& kw, const py::object& progress) {
  SelectOptions sel;
  if (!dataset.is_none()) sel.folder = fs_path(dataset);
  if (kw.contains("list") && !kw["list"].is_none()) sel.list = fs_path(kw["list"]);
  if (kw.contains("sample") && !kw["sample"].is_none())
    sel.sample = py::str(kw["sample"]).cast<std::string>();
  if (kw.contains("seed") && !kw["seed"].is_none()) sel.seed = kw["seed"].cast<std::uint64_t>();
  sel.shard_index = int_kw(kw, "shard_index", 0);
  sel.shard_count = int_kw(kw, "shard_count", 1);
  StatsJob job;
  job.recipe = overrides_from(kw).apply(Recipe{});
  job.ddof = int_kw(kw, "ddof", 0);
  if (job.ddof != 0 && job.ddof != 1)
    throw Error(ErrorCode::invalid_argument, "ddof must be 0 or 1");
  job.mean_image = bool_kw(kw, "mean_image");
  job.patch = int_kw(kw, "patch", 0);
  if (job.patch != 0) Accumulator(1).enable_patch(job.patch);  // a bad K before any scan
  job.pixel_covariance = bool_kw(kw, "pixel_covariance");
  const int threads = int_kw(kw, "threads", 0);
  const bool truncated = bool_kw(kw, "allow_truncated");
  const std::uint64_t max_memory = memory_kw(kw);
  Selection selection;
  StatsFile st = run_job<StatsFile>(
      [&](const std::atomic<bool>* cancel, Progress* p) {
        sel.scan = scan_from(kw, cancel);
        selection = select_dataset(sel);
        return compute_stats(selection, job,
                             options_for(threads, truncated, cancel, p, max_memory));
      },
      progress);
  if (st.acc.images() == 0)
    throw Error(ErrorCode::empty, "no image could be used: all " +
                                      std::to_string(st.skipped.size()) + " files were skipped");
  // user -> imgnorm.stats -> _run -> here
  for (const auto& w : selection.warnings) warn(w, 3);
  for (const auto& c : classes_without_images(selection, st)) warn(empty_class_warning(c), 3);
  return PyStats(std::move(st));
}

PyStats py_merge(const std::vector<std::shared_ptr<PyStats>>& parts) {
  std::vector<StatsFile> files;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    files.push_back(*parts[i]->file);
    names.push_back("stats #" + std::to_string(i) + " (" + parts[i]->file->source + ")");
  }
  std::vector<std::string> warnings;
  PyStats merged(merge_stats(files, names, &warnings));
  for (const auto& w : warnings) warn(w, 2);  // user -> imgnorm.merge -> here
  return merged;
}

// ---- normalize ----------------------------------------------------------------------------------

py::list skipped_list(const std::vector<Skipped>& skipped) {
  py::list l;
  for (const auto& k : skipped) l.append(py::make_tuple(fs_str(k.path), fs_str(k.reason)));
  return l;
}

py::tuple py_normalize(const py::object& dataset, const py::dict& kw, const py::object& progress) {
  NormalizeJob job = job_from(kw);
  const int threads = int_kw(kw, "threads", 0);
  const bool truncated = bool_kw(kw, "allow_truncated");
  const std::uint64_t max_memory = memory_kw(kw);
  const std::string list = kw.contains("list") && !kw["list"].is_none() ? fs_path(kw["list"]) : "";
  std::optional<py::array> held;  // an input array, kept alive and contiguous during the run
  NormalizeInput input;
  std::optional<Normalization> n;
  if (py::isinstance<py::array>(dataset)) {
    held = py::array::ensure(dataset, py::array::c_style);
    input.source = "array";
    input.array = array_view(*held, "array");
    n.emplace(std::move(job), std::move(input));
  } else {
    // The scan runs as a job too, so that Ctrl-C stops it.
    const std::string path = dataset.is_none() ? "" : fs_path(dataset);
    n.emplace(run_job<Normalization>(
        [&](const std::atomic<bool>* cancel, Progress*) {
          return Normalization(std::move(job), path, list, scan_from(kw, cancel));
        },
        py::none()));
  }
  for (const auto& w : n->warnings()) warn(w, 3);  // user -> imgnorm.normalize -> _run -> here
  const std::string out = kw.contains("out") && !kw["out"].is_none() ? fs_path(kw["out"]) : "";
  if (!out.empty()) {
    const bool force = bool_kw(kw, "force");
    const bool shards = bool_kw(kw, "output_shards");
    NormalizeResult r = run_job<NormalizeResult>(
        [&](const std::atomic<bool>* cancel, Progress* p) {
          const PipelineOptions o = options_for(threads, truncated, cancel, p, max_memory);
          return normalize_to_folder(*n, out, force, o, nullptr, shards);
        },
        progress);
    for (const auto& c : r.empty_classes) warn(empty_class_warning(c), 3);
    return py::make_tuple(r.rows, skipped_list(r.skipped));
  }
  auto sink = std::make_shared<MemorySink>();
  const bool force = bool_kw(kw, "force");
  if (!n->job().save_stats.empty()) check_outputs({n->job().save_stats, "", force});
  NormalizeResult r = run_job<NormalizeResult>(
      [&](const std::atomic<bool>* cancel, Progress* p) {
        const PipelineOptions o = options_for(threads, truncated, cancel, p, max_memory);
        n->prepare(o);
        NormalizeResult res = n->run(*sink, o);
        save_fitted_stats(*n, force, cancel);
        return res;
      },
      progress);
  for (const auto& c : r.empty_classes) warn(empty_class_warning(c), 3);
  const auto shape = n->shape(r.rows);
  py::array x = owning_array(std::move(sink->data()), numpy_dtype(n->job().dtype),
                             std::vector<py::ssize_t>(shape.begin(), shape.end()));
  py::object y = py::none();
  if (n->labels()) {
    std::vector<std::uint8_t> bytes(r.labels.size() * sizeof(std::int64_t));
    std::memcpy(bytes.data(), r.labels.data(), bytes.size());
    y = owning_array(std::move(bytes), py::dtype::of<std::int64_t>(),
                     {static_cast<py::ssize_t>(r.labels.size())});
  }
  py::list files;
  for (const auto& f : r.files) files.append(fs_str(f));
  return py::make_tuple(x, y, files, skipped_list(r.skipped));
}

// ---- Normalizer ---------------------------------------------------------------------------------

// One library Normalizer per image size (a mean image fixes the size; the others do not care).
struct PyNormalizer {
  NormalizeJob job;
  int threads = 0;
  int channels = 3;  // of the images it takes: the statistics' (or gray / rgb without)
  Size size{1, 1};   // a size to build a representative normalizer at
  std::mutex mutex;
  std::map<std::pair<int, int>, std::shared_ptr<const Normalizer>> by_size;

  std::shared_ptr<const Normalizer> for_size(int width, int height) {
    std::lock_guard<std::mutex> lock(mutex);
    auto& slot = by_size[{width, height}];
    if (!slot) slot = std::make_shared<const Normalizer>(make_normalizer(job, {width, height}));
    return slot;
  }
  std::shared_ptr<const Normalizer> any() { return for_size(size.width, size.height); }
};

py::array normalizer_call(PyNormalizer& self, const py::array& input) {
  py::array a = py::array::ensure(input, py::array::c_style);
  if (!a) throw Error(ErrorCode::invalid_argument, "expected a numpy array");
  dtype_of(a);
  // One image: (H,W,C) with C the normalizer's channels, or (H,W) gray; else a batch.
  const int nc = self.channels;
  bool single = a.ndim() == 2 || (a.ndim() == 3 && nc == 3 && a.shape(2) == 3);
  if (a.ndim() == 3 && nc == 1 && !single)
    throw Error(ErrorCode::invalid_argument,
                "a gray batch is (N,H,W,1) and one gray image (H,W); got a 3-D array");
  py::array batch = a;
  if (single) {
    std::vector<py::ssize_t> shape{1};
    for (py::ssize_t i = 0; i < a.ndim(); ++i) shape.push_back(a.shape(i));
    if (a.ndim() == 2) shape.push_back(1);
    batch = a.reshape(shape);
  }
  if (batch.ndim() != 4)
    throw Error(ErrorCode::invalid_argument, "expected (N,H,W,C), (H,W,C) or (H,W) images");
  const ImageArray view = array_view(batch, "array");
  const auto norm = self.for_size(view.width(), view.height());
  const py::ssize_t n = static_cast<py::ssize_t>(view.rows());
  std::vector<py::ssize_t> shape{n};
  for (std::uint64_t v : row_shape(*norm, {view.width(), view.height()}))
    shape.push_back(static_cast<py::ssize_t>(v));
  // numpy allocates (uninitialized, large pages where it can); the library writes every byte.
  py::array out(numpy_dtype(norm->format().dtype), shape);
  void* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    normalize_rows(*norm, view, dst, self.threads);
  }
  if (single) return out.reshape(std::vector<py::ssize_t>(shape.begin() + 1, shape.end()));
  return out;
}

void bind_normalizer(py::module_& m) {
  py::class_<PyNormalizer, std::shared_ptr<PyNormalizer>>(m, "Normalizer")
      .def(py::init([](const py::dict& kw) {
             auto p = std::make_shared<PyNormalizer>();
             p->job = job_from(kw);
             p->job.labels = false;
             p->threads = int_kw(kw, "threads", 0);
             if (!p->job.stats && !p->job.stats_path.empty())
               p->job.stats = read_stats_file(p->job.stats_path);
             p->channels = p->job.stats ? channel_count(p->job.stats->recipe.channels)
                                        : (p->job.channels == ChannelOrder::gray ? 1 : 3);
             if (p->job.spec.mode == Mode::mean_image && !p->job.mean_image_path.empty())
               read_mean_image(p->job.mean_image_path, p->channels, p->size);
             // zca, pca: the one size they take, the statistics' (D = H·W·C of the covariance).
             if (is_full_image(p->job.spec.mode) && p->job.stats)
               p->size = p->job.stats->recipe.size;
             if (p->job.spec.mode == Mode::zca_patch) {  // the smallest image it takes
               const int k = p->job.spec.patch ? std::max(p->job.spec.patch, 1) : kDefaultPatch;
               p->size = {k, k};
             }
             // Checks the job now, not at the first call.
             std::vector<std::string> warnings;
             p->by_size[{p->size.width, p->size.height}] =
                 std::make_shared<const Normalizer>(make_normalizer(p->job, p->size, &warnings));
             for (const auto& w : warnings) warn(w, 2);  // user -> imgnorm.Normalizer.__init__
             return p;
           }),
           py::arg("kwargs"))
      .def("__call__", &normalizer_call, py::arg("images"))
      .def_property_readonly("formula", [](PyNormalizer& s) { return s.any()->formula(); })
      .def_property_readonly("mode",
                             [](PyNormalizer& s) { return to_string(s.any()->spec().mode); })
      .def_property_readonly("layout",
                             [](PyNormalizer& s) { return to_string(s.any()->format().layout); })
      .def_property_readonly("dtype",
                             [](PyNormalizer& s) { return to_string(s.any()->format().dtype); })
      .def_property_readonly("channels",
                             [](PyNormalizer& s) { return to_string(s.any()->format().channels); });
}

// ---- load ---------------------------------------------------------------------------------------

py::array py_load(const py::object& path_arg, const py::dict& kw) {
  const std::string path = fs_path(path_arg);
  const Recipe recipe = overrides_from(kw).apply(Recipe{});
  const bool truncated = bool_kw(kw, "allow_truncated");
  Image img;
  {
    py::gil_scoped_release release;
    load_image(path, recipe, img, nullptr, truncated);
  }
  std::vector<std::uint8_t> bytes(img.data(), img.data() + img.size_bytes());
  std::vector<py::ssize_t> shape{img.height(), img.width()};
  if (img.channels() != 1 || recipe.channels != ChannelOrder::gray) shape.push_back(img.channels());
  return owning_array(std::move(bytes), py::dtype::of<std::uint8_t>(), shape);
}

// ---- Loader -------------------------------------------------------------------------------------

struct PyLoaderJob {
  std::unique_ptr<Normalization> job;
  std::shared_ptr<BatchPool> pool = std::make_shared<BatchPool>(6);  // shared by its epochs
};

LoaderOptions loader_options(const py::dict& kw) {
  LoaderOptions o;
  const int bs = int_kw(kw, "batch_size", 64);
  if (bs < 1) throw Error(ErrorCode::invalid_argument, "batch_size must be positive");
  o.batch_size = static_cast<std::size_t>(bs);
  o.shuffle = bool_kw(kw, "shuffle");
  if (kw.contains("seed") && !kw["seed"].is_none()) o.seed = kw["seed"].cast<std::uint64_t>();
  o.drop_last = bool_kw(kw, "drop_last");
  o.drop_tail = kw.contains("drop_tail") && !kw["drop_tail"].is_none() ? bool_kw(kw, "drop_tail")
                                                                       : o.drop_last;
  o.rank = int_kw(kw, "rank", 0);
  o.world_size = int_kw(kw, "world_size", 1);
  o.worker = int_kw(kw, "worker", 0);
  o.workers = int_kw(kw, "workers", 1);
  o.prefetch = int_kw(kw, "prefetch", 2);
  if (o.prefetch < 1) throw Error(ErrorCode::invalid_argument, "prefetch must be at least 1");
  o.raw_u8 = bool_kw(kw, "raw_u8");
  o.pipeline.threads = int_kw(kw, "threads", 0);
  o.pipeline.allow_truncated = bool_kw(kw, "allow_truncated");
  o.pipeline.max_memory = memory_kw(kw);
  return o;
}

std::shared_ptr<PyLoaderJob> make_loader_job(const py::object& dataset, const py::dict& kw) {
  auto self = std::make_shared<PyLoaderJob>();
  NormalizeJob job = job_from(kw);
  const std::string list = kw.contains("list") && !kw["list"].is_none() ? fs_path(kw["list"]) : "";
  const std::string input = dataset.is_none() ? "" : fs_path(dataset);
  const bool force = bool_kw(kw, "force");
  const std::uint64_t max_memory = memory_kw(kw);
  if (!job.save_stats.empty()) check_outputs({job.save_stats, "", force});
  self->job = run_job<std::unique_ptr<Normalization>>(
      [&](const std::atomic<bool>* cancel, Progress* p) {
        auto n =
            std::make_unique<Normalization>(std::move(job), input, list, scan_from(kw, cancel));
        if (n->input().array)
          throw Error(ErrorCode::invalid_argument,
                      input + ": the loader reads image files; normalize an array with Normalizer");
        n->prepare(options_for(int_kw(kw, "threads", 0), bool_kw(kw, "allow_truncated"), cancel, p,
                               max_memory));
        save_fitted_stats(*n, force, cancel);
        return n;
      },
      py::none());
  for (const auto& w : self->job->warnings())
    warn(w, 2);  // user -> imgnorm.Loader.__init__ -> here
  return self;
}

struct PyEpoch {
  std::shared_ptr<PyLoaderJob> job;  // keeps the job alive while the epoch runs
  std::unique_ptr<EpochLoader> epoch;
  bool raw = false;
  std::vector<Skipped> skipped;  // kept after close()

  void close() {
    if (!epoch) return;
    py::gil_scoped_release release;
    skipped = epoch->skipped();
    epoch.reset();  // cancels and joins the producer
  }
};

py::object epoch_next(PyEpoch& self) {
  if (!self.epoch) return py::none();
  while (true) {
    bool ready;
    {
      py::gil_scoped_release release;
      ready = self.epoch->wait(50);
    }
    if (PyErr_CheckSignals() != 0) {
      py::error_already_set interrupt;
      self.close();
      throw interrupt;
    }
    if (ready) break;
  }
  std::optional<Batch> b;
  {
    py::gil_scoped_release release;
    b = self.epoch->next();
  }
  if (!b) return py::none();
  const Normalization& n = *self.job->job;
  const py::ssize_t rows = static_cast<py::ssize_t>(b->rows);
  // The job's shape: images in its layout, or N×K for pca (uint8 batches are mode scale's).
  std::vector<py::ssize_t> shape;
  for (std::uint64_t v : n.shape(b->rows)) shape.push_back(static_cast<py::ssize_t>(v));
  const bool raw = self.raw;
  // The capsule owns the buffer; when numpy frees the array, the buffer returns to the
  // loader's pool (or to the allocator), never earlier.
  auto* holder = new BatchBuffer(std::move(b->images));
  py::capsule base(holder, [](void* p) { delete static_cast<BatchBuffer*>(p); });
  py::array images(raw ? py::dtype::of<std::uint8_t>() : numpy_dtype(n.normalizer().format().dtype),
                   shape, {}, holder->get(), base);
  py::object labels = py::none();
  if (n.labels()) {
    std::vector<std::uint8_t> bytes(b->labels.size() * sizeof(std::int64_t));
    std::memcpy(bytes.data(), b->labels.data(), bytes.size());
    labels = owning_array(std::move(bytes), py::dtype::of<std::int64_t>(), {rows});
  }
  std::vector<std::uint8_t> idx(b->indices.size() * sizeof(std::int64_t));
  for (std::size_t i = 0; i < b->indices.size(); ++i) {
    const std::int64_t v = static_cast<std::int64_t>(b->indices[i]);
    std::memcpy(idx.data() + i * sizeof v, &v, sizeof v);
  }
  py::array indices = owning_array(std::move(idx), py::dtype::of<std::int64_t>(), {rows});
  return py::make_tuple(images, labels, indices);
}

void bind_loader(py::module_& m) {
  py::class_<PyLoaderJob, std::shared_ptr<PyLoaderJob>>(m, "LoaderJob")
      .def(py::init(&make_loader_job), py::arg("dataset"), py::arg("kwargs"))
      .def_property_readonly(
          "size", [](const PyLoaderJob& s) { return s.job->input().dataset.entries.size(); })
      .def_property_readonly("files",
                             [](const PyLoaderJob& s) {
                               py::list l;
                               for (const auto& e : s.job->input().dataset.entries)
                                 l.append(fs_str(e.path));
                               return l;
                             })
      .def("batches",
           [](const PyLoaderJob& s, const py::dict& kw) {
             return batches_per_epoch(s.job->input().dataset.entries.size(), loader_options(kw));
           })
      .def("indices", [](const PyLoaderJob& s, const py::dict& kw, std::uint64_t epoch) {
        return epoch_indices(s.job->input().dataset.entries.size(), loader_options(kw), epoch);
      });
  py::class_<PyEpoch, std::shared_ptr<PyEpoch>>(m, "LoaderEpoch")
      .def(py::init([](std::shared_ptr<PyLoaderJob> job, const py::dict& kw, std::uint64_t epoch) {
             auto e = std::make_shared<PyEpoch>();
             e->job = job;
             LoaderOptions o = loader_options(kw);
             o.pool = job->pool;
             e->raw = o.raw_u8;
             e->epoch = std::make_unique<EpochLoader>(*job->job, o, epoch);
             return e;
           }),
           py::arg("job"), py::arg("kwargs"), py::arg("epoch"))
      .def("next", &epoch_next)
      .def("close", &PyEpoch::close)
      .def("skipped",
           [](const PyEpoch& e) { return skipped_list(e.epoch ? e.epoch->skipped() : e.skipped); });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "imgnorm's native core; use the imgnorm package, not this module.";
  m.def(
      "printable",
      [](const py::str& text) {
        // os.fsencode's bytes (names keep their bytes), then the CLI's one-line form.
        const auto bytes = py::reinterpret_steal<py::bytes>(PyUnicode_EncodeFSDefault(text.ptr()));
        if (!bytes) throw py::error_already_set();
        return printable(std::string(bytes));
      },
      py::arg("text"));
  g_error = PyErr_NewExceptionWithDoc("imgnorm.Error",
                                      "Bad input to imgnorm: a file, an argument or a stats file.",
                                      PyExc_Exception, nullptr);
  py::tuple arg_bases = py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError));
  g_argument_error = PyErr_NewExceptionWithDoc(
      "imgnorm.ArgumentError", "A bad argument, or nothing to do (imgnorm.Error, ValueError).",
      arg_bases.ptr(), nullptr);
  py::tuple file_bases = py::make_tuple(py::handle(g_error), py::handle(PyExc_OSError));
  g_file_error = PyErr_NewExceptionWithDoc(
      "imgnorm.FileError",
      "A file that cannot be read, written or parsed (imgnorm.Error, OSError).", file_bases.ptr(),
      nullptr);
  m.attr("Error") = py::handle(g_error);
  m.attr("ArgumentError") = py::handle(g_argument_error);
  m.attr("FileError") = py::handle(g_file_error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      raise_error(e);
    }
  });
  m.attr("__version__") = version();
  bind_stats(m);
  bind_normalizer(m);
  bind_loader(m);
  m.def("stats", &py_stats, py::arg("dataset"), py::arg("kwargs"), py::arg("progress"));
  m.def("merge", &py_merge, py::arg("parts"));
  m.def("normalize", &py_normalize, py::arg("dataset"), py::arg("kwargs"), py::arg("progress"));
  m.def("load", &py_load, py::arg("path"), py::arg("kwargs"));
}
