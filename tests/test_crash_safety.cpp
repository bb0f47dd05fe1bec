// Crash safety of qlib-convert: killed at any moment (SIGKILL, SIGINT), it leaves either the complete
// new output or nothing under the output name, and an existing output is untouched.
//
// Documented leftover: the converter writes into a hidden sibling directory ".<name>.tmp-<pid>-<hex>"
// (atomic_directory) that is renamed to <name> only when complete. A process killed outright cannot
// remove it, so the only thing a kill may leave behind is that hidden directory of the killed pid;
// anything else next to the output (a partial <name>, a temp of another process) is a failure.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fcntl.h>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "qlib/io/safetensors.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;

const fs::path converter = qlib_test::binary_dir() / "examples" / "qlib-convert" / "qlib-convert";

std::vector<std::string> convert_args(const fs::path& out, bool force) {
    std::vector<std::string> a{converter.string(), "--hf-path",
                               (qlib_test::shared_dir() / "models" / "aidreams-260k").string(),
                               "--out", out.string(), "-q", "--q-mode", "lut", "--q-bits", "6", "--threads", "2"};
    if (force) a.emplace_back("--force");
    return a;
}

pid_t spawn(const std::vector<std::string>& args) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::dup2(null, 2);
        // As from an interactive shell: a background test runner may have left these ignored.
        ::signal(SIGINT, SIG_DFL);
        ::signal(SIGTERM, SIG_DFL);
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    return pid;
}

/// Waits for the child; returns its exit code, or -signal when a signal ended it.
int reap(pid_t pid) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

/// The names in `dir`.
std::set<std::string> entries(const fs::path& dir) {
    std::set<std::string> s;
    for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
    return s;
}

/// How the hidden temporary directory of process `pid` for output `name` starts.
std::string temp_prefix(const std::string& name, pid_t pid) { return "." + name + ".tmp-" + std::to_string(pid) + "-"; }

/// Waits until the converter has started writing into its temporary directory (so that a kill lands
/// mid-write). Returns nothing then, or the exit status when the converter finished first.
std::optional<int> wait_for_partial_output(const fs::path& parent, const std::string& name, pid_t pid) {
    const auto prefix = temp_prefix(name, pid);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(parent, ec))
            if (e.path().filename().string().starts_with(prefix) && !fs::is_empty(e.path(), ec)) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    ::kill(pid, SIGKILL);
    reap(pid);
    FAIL("qlib-convert neither started writing nor exited within 60 s");
    return std::nullopt;
}

/// Checks a complete MLX output directory.
void check_complete(const fs::path& out) {
    REQUIRE(fs::is_regular_file(out / "config.json"));
    const qlib::safetensors_model m(out);
    CHECK(!m.tensors().empty());
    CHECK(m.find("model.layers.0.mlp.down_proj.weight") != nullptr);
}

}  // namespace

TEST_CASE("crash safety: a killed conversion leaves the output complete or absent", "[crash]") {
    REQUIRE(fs::is_regular_file(converter));
    qlib_test::temp_dir dir("crash");
    const std::string name = "out";
    const fs::path out = dir / name;

    // Reference: a full run works and produces exactly the output directory.
    {
        const pid_t pid = spawn(convert_args(out, false));
        REQUIRE(reap(pid) == 0);
        check_complete(out);
        CHECK(entries(dir.path) == std::set<std::string>{name});
        fs::remove_all(out);
    }

    int absent = 0;  // kills that landed before the output was committed (the interesting case)
    for (int sig : {SIGKILL, SIGINT, SIGTERM}) {
        for (int delay_ms : {0, 5, 20, 60}) {
            INFO("signal " << sig << ", " << delay_ms << " ms after the first output file appeared");
            const pid_t pid = spawn(convert_args(out, false));
            auto rc = wait_for_partial_output(dir.path, name, pid);
            if (!rc) {
                std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
                ::kill(pid, sig);
                rc = reap(pid);
            }
            // Whatever happened, the output name holds a complete conversion or does not exist.
            if (fs::exists(out)) {
                check_complete(out);
                fs::remove_all(out);
            } else {
                CHECK(*rc != 0);
                ++absent;
            }
            // Only the killed process's hidden temporary directory may remain.
            for (const auto& e : entries(dir.path)) {
                INFO("left behind: " << e);
                CHECK(e.starts_with(temp_prefix(name, pid)));
                fs::remove_all(dir / e);
            }
        }
    }
    CHECK(absent > 0);
}

TEST_CASE("crash safety: an existing output is untouched by a failed or killed replacement", "[crash]") {
    REQUIRE(fs::is_regular_file(converter));
    qlib_test::temp_dir dir("crash-existing");
    const std::string name = "out";
    const fs::path out = dir / name;
    fs::create_directories(out);
    qlib_test::write_bytes(out / "model.safetensors", "previous output");
    qlib_test::write_bytes(out / "marker", "keep me");
    auto untouched = [&] {
        CHECK(entries(out) == std::set<std::string>{"marker", "model.safetensors"});
        CHECK(qlib_test::read_bytes(out / "model.safetensors") == "previous output");
        CHECK(qlib_test::read_bytes(out / "marker") == "keep me");
    };

    // Without --force the converter refuses before writing anything.
    CHECK(reap(spawn(convert_args(out, false))) == 1);
    untouched();
    CHECK(entries(dir.path) == std::set<std::string>{name});

    // With --force, killed while writing the replacement: the old output stays as it was.
    for (int sig : {SIGKILL, SIGINT}) {
        INFO("signal " << sig);
        const pid_t pid = spawn(convert_args(out, true));
        REQUIRE(!wait_for_partial_output(dir.path, name, pid));
        ::kill(pid, sig);
        CHECK(reap(pid) != 0);
        untouched();
        for (const auto& e : entries(dir.path)) {
            if (e == name) continue;
            INFO("left behind: " << e);
            CHECK(e.starts_with(temp_prefix(name, pid)));
            fs::remove_all(dir / e);
        }
    }

    // Let through, --force replaces it completely.
    REQUIRE(reap(spawn(convert_args(out, true))) == 0);
    check_complete(out);
    CHECK(!fs::exists(out / "marker"));
    CHECK(entries(dir.path) == std::set<std::string>{name});
}
