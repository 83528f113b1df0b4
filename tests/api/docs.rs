//! The README's commands, run as written against a fresh server: documentation that drifts
//! from the code fails here.

use std::time::Duration;

use crate::process::Server;

/// The shell commands between two markers of a Markdown file, continuation lines joined.
fn commands_between(text: &str, begin: &str, end: &str) -> Vec<String> {
    let start = text
        .find(begin)
        .unwrap_or_else(|| panic!("marker {begin} missing"));
    let stop = start
        + text[start..]
            .find(end)
            .unwrap_or_else(|| panic!("marker {end} missing"));
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in text[start..stop].lines().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("```") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

#[tokio::test]
async fn the_readme_curl_examples_work_as_written() {
    let readme = include_str!("../../README.md");
    let commands = commands_between(
        readme,
        "<!-- begin: curl-examples",
        "<!-- end: curl-examples",
    );
    assert!(commands.len() >= 10, "too few commands found: {commands:?}");

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let local = format!("127.0.0.1:{}", server.port);
    for command in commands {
        let command = command.replace("localhost:3000", &local);
        let output = tokio::process::Command::new("sh")
            .args(["-c", &format!("set -e; {command} -w '\\n%{{http_code}}'")])
            .output()
            .await
            .expect("sh and curl are needed: apt-get install curl");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let status = stdout.lines().last().unwrap_or_default();
        assert!(
            matches!(status, "200" | "201"),
            "{command} answered {status}: {stdout}"
        );
        if command.contains("/tasks") {
            assert!(stdout.contains(r#""success":true"#), "{command}: {stdout}");
        }
    }
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
}

#[tokio::test]
async fn the_backup_format_document_reads_a_real_backup_with_standard_tools() {
    let doc = include_str!("../../docs/backup-format.md");
    let section = doc
        .split("## Reading a backup with standard tools")
        .nth(1)
        .expect("section missing");
    let commands: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert_eq!(commands.len(), 6, "{commands:?}");

    let dir = tempfile::tempdir().unwrap();
    crate::backups::big_sqlite(dir.path(), 300).await;
    let out = crate::process::run(dir.path(), &["backup"], &[("BACKUP_DIR", "backups")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let file = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap();

    let mut outputs = Vec::new();
    for command in &commands {
        let command = command.replace("FILE", &file.display().to_string());
        let output = tokio::process::Command::new("bash")
            // No pipefail: `zstd | head` may end zstd with SIGPIPE, as intended.
            .args(["-c", &format!("set -e; {command}")])
            .output()
            .await
            .expect("sh, zstd, jq and sha256sum are needed: apt-get install zstd jq");
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(String::from_utf8(output.stdout).unwrap());
    }
    let header: serde_json::Value = serde_json::from_str(outputs[1].trim()).unwrap();
    assert_eq!(header["format"], "task-api-backup");
    let pending: Vec<&str> = outputs[2].lines().collect();
    assert_eq!(pending.len(), 300, "every seeded task is pending");
    let trailer: serde_json::Value = serde_json::from_str(outputs[3].trim()).unwrap();
    let sha = outputs[4].split_whitespace().next().unwrap();
    assert_eq!(trailer["trailer"]["sha256"], sha);
    assert_eq!(outputs[5].trim(), trailer["trailer"]["rows"].to_string());
}

#[tokio::test]
async fn the_readme_doctor_examples_run_as_written() {
    let readme = include_str!("../../README.md");
    let commands = commands_between(
        readme,
        "<!-- begin: doctor-examples",
        "<!-- end: doctor-examples",
    );
    assert_eq!(commands.len(), 3, "{commands:?}");

    let dir = tempfile::tempdir().unwrap();
    let out = crate::process::run(dir.path(), &["migrate"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    // The commands name `task-api`: the binary under test comes first on PATH.
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_task-api"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in &commands {
        let result = tokio::process::Command::new("sh")
            .args(["-c", command])
            .env_clear()
            .env("PATH", &path)
            .env("DATA_DIR", dir.path().join("data"))
            .current_dir(dir.path())
            .output()
            .await
            .expect("sh is needed");
        let stdout = String::from_utf8_lossy(&result.stdout);
        let stderr = String::from_utf8_lossy(&result.stderr);
        // This machine is not a hardened container: 1 (a required row failed) is expected
        // where every row is required; 2 would be a usage error in the README.
        let code = result.status.code();
        assert!(matches!(code, Some(0 | 1)), "{command}: {code:?} {stderr}");
        if command.contains("--json") {
            let json: serde_json::Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{command}: not JSON ({e}): {stdout}"));
            assert_eq!(json["rows"].as_array().map(Vec::len), Some(14), "{stdout}");
        } else {
            assert!(stdout.starts_with("ROW "), "{command}: {stdout}");
        }
        if command.starts_with("DOCTOR_REQUIRE=database,migrations") {
            assert_eq!(code, Some(0), "{command}: {stdout}{stderr}");
        }
    }
}
