//! The `task-api` binary: everything lives in the library; see `task_api::cli`.

fn main() -> std::process::ExitCode {
    task_api::cli::run()
}
