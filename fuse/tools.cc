// Front ends of `diff`, `layers`, `squash`, `import` and `export`: argument parsing and the
// text and JSON output formats. The work is in core/image_diff, core/layer_table, core/squash,
// core/image_import and core/layer_export; nothing here reads a layer.
#include "fuse/tools.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/image_diff.h"
#include "core/image_import.h"
#include "core/layer_export.h"
#include "core/layer_table.h"
#include "core/progress.h"
#include "core/squash.h"
#include "core/whiteout.h"

namespace unionfs::fuse {
namespace {

constexpr const char* kDiffUsage =
    "usage: unionfs-cpp diff [--format text|json] [--exclude PATH]... LOWER1[:LOWER2...]:UPPER";
constexpr const char* kLayersUsage =
    "usage: unionfs-cpp layers [--bytes] [--no-trunc] [--format table|json] LAYERS";

constexpr const char* kSquashUsage =
    "usage: unionfs-cpp squash [--range I:J] [--format auto|overlay|oci] LAYERS OUTDIR";

constexpr const char* kImportUsage =
    "usage: unionfs-cpp import [--image NAME] [--format auto|overlay|oci] IMAGE.tar DIR";
constexpr const char* kExportUsage = "usage: unionfs-cpp export LAYER_DIR LAYER.tar";

enum class Format { kText, kJson };

// A JSON string literal. Invalid UTF-8 bytes (a file name may hold any) become U+FFFD, so
// the output always parses.
std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else if (c >= 0x80) {
      size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      bool valid = len > 0 && c < 0xf5 && i + len <= s.size();
      for (size_t k = 1; valid && k < len; ++k) {
        valid = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
      }
      if (!valid) {
        out += "\\ufffd";
        ++i;
        continue;
      }
      out.append(s, i, len);
      i += len;
      continue;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out + "\"";
}

// Sizes as docker prints them: decimal units, three significant digits ("7.8MB", "0B").
std::string human_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1000.0 && u + 1 < std::size(kUnits)) {
    v /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g%s", v, kUnits[u]);
  return buf;
}

Format parse_format(const std::string& v, const char* table_name) {
  if (v == "json") return Format::kJson;
  if (v == "text" || v == table_name) return Format::kText;
  throw SetupError("bad --format '" + v + "' (" + table_name + " or json)");
}

// The value of "--opt VALUE" or "--opt=VALUE" at argv[i]; advances i past it.
bool take_value(int argc, char** argv, int& i, const std::string& opt, std::string& value) {
  const std::string a = argv[i];
  if (a == opt) {
    if (i + 1 >= argc) throw SetupError(opt + " needs an argument");
    value = argv[++i];
    return true;
  }
  if (a.starts_with(opt + "=")) {
    value = a.substr(opt.size() + 1);
    return true;
  }
  return false;
}

std::string where_msg(const char* tool, const std::string& where, int err) {
  return std::string(tool) + ": cannot read " + where + ": " + std::strerror(err);
}

WhiteoutFormat read_format() { return WhiteoutFormat(WhiteoutMode::kAuto, ::geteuid() == 0); }

int run_diff(int argc, char** argv) {
  Format format = Format::kText;
  std::unordered_set<std::string> exclude;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (take_value(argc, argv, i, "--format", v)) {
      format = parse_format(v, "text");
    } else if (take_value(argc, argv, i, "--exclude", v)) {
      if (!v.starts_with("/")) throw SetupError("--exclude needs an absolute path, not '" + v + "'");
      exclude.insert(v);
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      throw SetupError(std::string("diff: unknown option '") + argv[i] + "' (see --help)");
    } else {
      positional.emplace_back(argv[i]);
    }
  }
  if (positional.size() != 1) throw SetupError(kDiffUsage);
  const LayerStack stack = LayerStack::open(positional[0], true);
  const WhiteoutFormat fmt = read_format();
  std::string where;
  auto changes = image_diff(stack, fmt, &where);
  if (!changes) throw SetupError(where_msg("diff", where, changes.error()));
  std::string out;
  if (format == Format::kText) {
    for (const Change& c : *changes) {
      if (!exclude.contains(c.path)) out += std::string(1, static_cast<char>(c.kind)) + " " + c.path + "\n";
    }
  } else {
    // podman diff --format json: {"changed": [...], "added": [...], "deleted": [...]}.
    const std::pair<const char*, ChangeKind> keys[] = {
        {"changed", ChangeKind::kModify}, {"added", ChangeKind::kAdd}, {"deleted", ChangeKind::kDelete}};
    out = "{";
    for (const auto& [key, kind] : keys) {
      out += std::string(out.size() > 1 ? ", " : "") + json_str(key) + ": [";
      bool first = true;
      for (const Change& c : *changes) {
        if (c.kind != kind || exclude.contains(c.path)) continue;
        out += (first ? "" : ", ") + json_str(c.path);
        first = false;
      }
      out += "]";
    }
    out += "}\n";
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

std::string layers_json(const LayerTable& t) {
  std::string out = "{\"layers\": [";
  for (size_t k = t.layers.size(); k-- > 0;) {
    const LayerStats& l = t.layers[k];
    out += (k + 1 == t.layers.size() ? "\n  " : ",\n  ");
    out += "{\"layer\": " + std::to_string(l.layer) + ", \"path\": " + json_str(l.path) +
           ", \"id\": " + json_str(l.id) + ", \"size\": " + std::to_string(l.size) +
           ", \"files\": " + std::to_string(l.files) + ", \"whiteouts\": " +
           std::to_string(l.whiteouts) + ", \"opaque_dirs\": " + std::to_string(l.opaque_dirs) +
           ", \"hidden\": " + std::to_string(l.hidden) + "}";
  }
  out += "\n], \"total\": {\"on_disk\": " + std::to_string(t.on_disk) +
         ", \"visible\": " + std::to_string(t.visible) + ", \"wasted\": " +
         std::to_string(t.wasted) + ", \"depth\": " + std::to_string(t.layers.size()) + "}}\n";
  return out;
}

std::string layers_text(const LayerTable& t, bool bytes, bool no_trunc) {
  auto size = [&](uint64_t v) { return bytes ? std::to_string(v) : human_size(v); };
  std::vector<std::vector<std::string>> rows = {
      {"LAYER", "ID", "SIZE", "FILES", "WHITEOUTS", "HIDDEN", "PATH"}};
  for (size_t k = t.layers.size(); k-- > 0;) {
    const LayerStats& l = t.layers[k];
    rows.push_back({std::to_string(l.layer), no_trunc ? l.id : l.id.substr(0, 12), size(l.size),
                    std::to_string(l.files), std::to_string(l.whiteouts), size(l.hidden),
                    l.path});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      line += r[c];
      if (c + 1 < r.size()) line.append(width[c] - r[c].size() + 3, ' ');
    }
    out += line + "\n";
  }
  out += "\ntotal: on-disk " + size(t.on_disk) + ", visible " + size(t.visible) + ", wasted " +
         size(t.wasted) + ", depth " + std::to_string(t.layers.size()) + "\n";
  return out;
}

int run_layers(int argc, char** argv) {
  Format format = Format::kText;
  bool bytes = false;
  bool no_trunc = false;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    const std::string a = argv[i];
    if (take_value(argc, argv, i, "--format", v)) {
      format = parse_format(v, "table");
    } else if (a == "--bytes") {
      bytes = true;
    } else if (a == "--no-trunc") {
      no_trunc = true;
    } else if (a.size() > 1 && a[0] == '-') {
      throw SetupError("layers: unknown option '" + a + "' (see --help)");
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 1) throw SetupError(kLayersUsage);
  const LayerStack stack = LayerStack::open(positional[0], true);
  const WhiteoutFormat fmt = read_format();
  std::string where;
  Result<LayerTable> table = Errno{EIO};
  {
    Progress progress("reading layers", stack.size() + 1);
    table = layer_table(stack, fmt, [&] { progress.advance(); }, &where);
  }
  if (!table) throw SetupError(where_msg("layers", where, table.error()));
  const std::string out = format == Format::kJson ? layers_json(*table)
                                                  : layers_text(*table, bytes, no_trunc);
  std::fputs(out.c_str(), stdout);
  return 0;
}

WhiteoutMode parse_squash_format(const std::string& v) {
  if (v == "auto") return WhiteoutMode::kAuto;
  if (v == "overlay") return WhiteoutMode::kOverlay;
  if (v == "oci") return WhiteoutMode::kOci;
  throw SetupError("bad --format '" + v + "' (auto, overlay or oci)");
}

int run_squash(int argc, char** argv) {
  SquashOptions opts;
  opts.privileged = ::geteuid() == 0;
  std::string range;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    const std::string a = argv[i];
    if (take_value(argc, argv, i, "--range", v)) {
      range = v;
    } else if (take_value(argc, argv, i, "--format", v)) {
      opts.output = parse_squash_format(v);
    } else if (a.size() > 1 && a[0] == '-') {
      throw SetupError("squash: unknown option '" + a + "' (see --help)");
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) throw SetupError(kSquashUsage);
  const LayerStack stack = LayerStack::open(positional[0], true);
  opts.range = parse_squash_range(range, stack.size());
  check_squash_target(stack, positional[1]);
  const WhiteoutFormat fmt = read_format();
  // The bar's total costs a walk of the directories: only paid when there is a bar to draw.
  uint64_t total = 0;
  if (Progress::on_terminal()) {
    auto steps = squash_steps(stack, fmt, opts);
    if (!steps) throw SetupError(where_msg("squash", "the layers", steps.error()));
    total = *steps;
  }
  std::string where;
  Result<SquashStats> stats = Errno{EIO};
  {
    Progress progress("squashing", total);
    stats = squash(stack, fmt, opts, positional[1], [&] { progress.advance(); }, &where);
  }
  if (!stats) {
    throw SetupError("squash: " + where + ": " + std::strerror(stats.error()) +
                     " (nothing written)");
  }
  std::printf("squashed layers %zu..%zu of %zu into %s: %llu dirs, %llu files (%llu hard links), "
              "%llu bytes, %llu whiteouts, %llu opaque dirs\n",
              opts.range.bottom, opts.range.top, stack.size(), positional[1].c_str(),
              static_cast<unsigned long long>(stats->dirs),
              static_cast<unsigned long long>(stats->files),
              static_cast<unsigned long long>(stats->hard_links),
              static_cast<unsigned long long>(stats->bytes),
              static_cast<unsigned long long>(stats->whiteouts),
              static_cast<unsigned long long>(stats->opaque_dirs));
  return 0;
}

int run_import(int argc, char** argv) {
  ImportOptions opts;
  opts.privileged = ::geteuid() == 0;
  std::string image;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    const std::string a = argv[i];
    if (take_value(argc, argv, i, "--image", v)) {
      image = v;
    } else if (take_value(argc, argv, i, "--format", v)) {
      opts.format = parse_squash_format(v);
    } else if (a.size() > 1 && a[0] == '-') {
      throw SetupError("import: unknown option '" + a + "' (see --help)");
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) throw SetupError(kImportUsage);
  const std::string& dir = positional[1];
  check_import_target(dir);
  std::string why;
  auto src = open_import(positional[0], image, &why);
  if (!src) throw SetupError("import: " + why);
  Result<ImportResult> res = Errno{EIO};
  {
    Progress progress("importing", src->total_bytes);
    res = import_layers(*src, dir, opts, [&](uint64_t n) { progress.advance(n); }, &why);
  }
  if (!res) throw SetupError("import: " + why + " (nothing written)");
  std::fprintf(stderr, "imported %s%s%s (%s): %zu layers into %s; mount with:\n"
               "  unionfs-cpp $(cat %s/stack):UPPER MOUNTPOINT\n",
               src->plan.name.empty() ? "the image" : "'", src->plan.name.c_str(),
               src->plan.name.empty() ? "" : "'", src->plan.format.c_str(), res->layers.size(),
               dir.c_str(), dir.c_str());
  std::printf("%s\n", res->stack.c_str());
  return 0;
}

int run_export(int argc, char** argv) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-') {
      throw SetupError("export: unknown option '" + a + "' (see --help)");
    }
    positional.push_back(a);
  }
  if (positional.size() != 2) throw SetupError(kExportUsage);
  check_export_target(positional[0], positional[1]);
  const WhiteoutFormat fmt = read_format();
  std::string why;
  auto plan = LayerExport::scan(positional[0], fmt, &why);
  if (!plan) throw SetupError("export: cannot read " + why);
  Result<ExportStats> stats = Errno{EIO};
  {
    Progress progress("exporting", plan->data_bytes());
    stats = plan->write(positional[1], [&](uint64_t n) { progress.advance(n); }, &why);
  }
  if (!stats) throw SetupError("export: " + why + " (nothing written)");
  std::printf("sha256:%s\n", stats->diff_id.c_str());
  return 0;
}

}  // namespace

bool is_tool(const char* name) {
  for (const char* t : {"diff", "layers", "squash", "import", "export"}) {
    if (std::strcmp(name, t) == 0) return true;
  }
  return false;
}

int run_tool(int argc, char** argv) {
  if (std::strcmp(argv[0], "squash") == 0) return run_squash(argc, argv);
  if (std::strcmp(argv[0], "import") == 0) return run_import(argc, argv);
  if (std::strcmp(argv[0], "export") == 0) return run_export(argc, argv);
  return std::strcmp(argv[0], "diff") == 0 ? run_diff(argc, argv) : run_layers(argc, argv);
}

}  // namespace unionfs::fuse
