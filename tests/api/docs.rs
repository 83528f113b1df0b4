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
async fn the_readme_paging_example_walks_the_listing_as_shown() {
    let readme = include_str!("../../README.md");
    let commands = commands_between(
        readme,
        "<!-- begin: paging-example",
        "<!-- end: paging-example",
    );
    assert_eq!(commands.len(), 2, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let client = reqwest::Client::new();
    for title in ["apple", "banana", "cherry"] {
        let reply = client
            .post(server.url("/tasks"))
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
    }
    let local = format!("127.0.0.1:{}", server.port);
    let mut pages = Vec::new();
    for command in &commands {
        let command = command.replace("localhost:3000", &local);
        let output = tokio::process::Command::new("sh")
            .args(["-c", &command])
            .output()
            .await
            .expect("sh and curl are needed: apt-get install curl");
        assert!(output.status.success(), "{command}");
        let page: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        pages.push(page);
    }
    let titles = |page: &serde_json::Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(&pages[0]), ["apple", "banana"]);
    let next = pages[0]["pagination"]["next"].as_str().unwrap();
    assert!(
        commands[1].ends_with(&format!("localhost:3000{next}'")),
        "the README's second command is not the first page's next: {next}"
    );
    assert_eq!(pages[0]["pagination"]["total"], 3);
    assert_eq!(titles(&pages[1]), ["cherry"]);
    assert_eq!(pages[1]["pagination"]["next"], serde_json::Value::Null);
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

    crate::tools::require(&[("zstd", "zstd"), ("jq", "jq"), ("sha256sum", "coreutils")]);
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
            .expect("bash is needed");
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
async fn the_readme_idempotency_example_creates_one_task_when_sent_twice() {
    let readme = include_str!("../../README.md");
    let commands = commands_between(
        readme,
        "<!-- begin: idempotency-example",
        "<!-- end: idempotency-example",
    );
    assert_eq!(commands.len(), 1, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.wait_ready().await;
    let command = commands[0].replace("localhost:3000", &format!("127.0.0.1:{}", server.port));
    let mut answers = Vec::new();
    for _ in 0..2 {
        let output = tokio::process::Command::new("sh")
            .args([
                "-c",
                &format!("set -e; {command} -D - -w '\\n%{{http_code}}'"),
            ])
            .output()
            .await
            .expect("sh and curl are needed: apt-get install curl");
        assert!(output.status.success(), "{command}: {output:?}");
        answers.push(String::from_utf8(output.stdout).unwrap());
    }
    let body = |answer: &str| {
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    assert!(answers[0].ends_with("\n201"), "{}", answers[0]);
    assert!(answers[1].ends_with("\n201"), "{}", answers[1]);
    assert!(
        !answers[0]
            .to_ascii_lowercase()
            .contains("idempotent-replayed")
    );
    assert!(
        answers[1]
            .to_ascii_lowercase()
            .contains("idempotent-replayed: true"),
        "{}",
        answers[1]
    );
    assert_eq!(body(&answers[0]), body(&answers[1]));
    let listing = reqwest::get(server.url("/tasks")).await.unwrap();
    let listing: serde_json::Value = listing.json().await.unwrap();
    assert_eq!(listing["pagination"]["total"], 1, "{listing}");
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await.code(),
        Some(0)
    );
}

/// Runs the README's access-control block as one shell script: the token and its hash are
/// generated as written, the server starts as written (`task-api` on the PATH), and the
/// `curl` gets in with the token while a request without it gets 401.
#[tokio::test]
async fn the_readme_access_control_block_works_as_written() {
    let readme = include_str!("../../README.md");
    let commands = commands_between(
        readme,
        "<!-- begin: access-control",
        "<!-- end: access-control",
    );
    assert_eq!(commands.len(), 4, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_task-api"), bin.join("task-api")).unwrap();
    let port = crate::pg::free_port();
    let local = format!("127.0.0.1:{port}");

    let mut script = format!(
        "set -e\nexport PATH='{}':\"$PATH\" PORT={port} BIND_ADDRESS=127.0.0.1 \
         DATA_DIR=data LOG_FORMAT=json\n",
        bin.display()
    );
    let mut started = false;
    for command in &commands {
        if command.starts_with("API_TOKENS_FILE=") {
            script.push_str(&format!("{command} > server.log 2>&1 &\nserver=$!\n"));
            script.push_str(&format!(
                "i=0; until curl -sf {local}/readyz > /dev/null; do \
                 i=$((i+1)); [ $i -lt 200 ] || exit 9; sleep 0.1; done\n"
            ));
            started = true;
        } else if command.starts_with("curl") {
            let command = command.replace("localhost:3000", &local);
            script.push_str(&format!("{command} -w '\\n%{{http_code}}\\n'\n"));
        } else {
            script.push_str(command);
            script.push('\n');
        }
    }
    assert!(started, "the block starts no server: {commands:?}");
    script.push_str(&format!(
        "curl -s {local}/tasks -w '\\n%{{http_code}}\\n'\n\
         printf 'token=%s\\n' \"$token\"\n\
         kill -TERM $server; wait $server\n"
    ));
    let output = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .await
        .expect("bash, curl, od and sha256sum are needed: apt-get install curl coreutils");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "{script}\n{stdout}\n{}\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(lines[1], "200", "with the token: {stdout}");
    assert!(lines[0].contains(r#""success":true"#), "{stdout}");
    assert_eq!(lines[3], "401", "without the token: {stdout}");
    let token = lines[4].strip_prefix("token=").unwrap();
    assert_eq!(token.len(), 64, "{token}");

    let file = std::fs::read_to_string(dir.path().join("api-tokens.txt")).unwrap();
    assert!(
        file.starts_with("sha256:") && file.ends_with('\n'),
        "{file}"
    );
    assert!(!file.contains(token), "the file holds only the hash");
    assert!(!log.contains(token), "the token reached the log");
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
            assert_eq!(json["rows"].as_array().map(Vec::len), Some(17), "{stdout}");
        } else {
            assert!(stdout.starts_with("ROW "), "{command}: {stdout}");
        }
        if command.starts_with("DOCTOR_REQUIRE=database,migrations") {
            assert_eq!(code, Some(0), "{command}: {stdout}{stderr}");
        }
    }
}

/// The README's encrypted-backup block, command by command with `task-api` on the PATH: keys
/// from `age-keygen`, an encrypted backup, a verify without the identity, and (the database
/// lost in between) a restore with it.
#[tokio::test]
async fn the_readme_encryption_block_works_as_written() {
    let readme = include_str!("../../README.md");
    let commands = commands_between(
        readme,
        "<!-- begin: encryption-example",
        "<!-- end: encryption-example",
    );
    assert_eq!(commands.len(), 5, "{commands:?}");
    crate::tools::require(&[("age-keygen", "age")]);
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_task-api"), bin.join("task-api")).unwrap();
    crate::backups::big_sqlite(dir.path(), 42).await;
    let mut outputs = Vec::new();
    for command in &commands {
        if command.contains("restore") {
            // The disaster the restore is for.
            std::fs::remove_dir_all(dir.path().join("data")).unwrap();
        }
        let output = tokio::process::Command::new("bash")
            .args(["-c", &format!("set -e; {command}")])
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("DATA_DIR", "data")
            .env("LOG_FORMAT", "json")
            .current_dir(dir.path())
            .output()
            .await
            .expect("bash is needed");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{command}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(stdout);
    }
    assert!(outputs[2].contains(".jsonl.zst.age"), "{}", outputs[2]);
    assert!(
        outputs[3].contains("partly checked") && outputs[3].contains("age header intact"),
        "{}",
        outputs[3]
    );
    assert!(outputs[4].contains("restored 42 tasks"), "{}", outputs[4]);
}
