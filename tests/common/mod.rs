//! Helpers shared by the end-to-end tests: run the real `recur` binary, read its JSON.
#![allow(dead_code, unreachable_pub)]

pub mod kafka;
pub mod standin;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A command running the binary under test.
pub fn recur() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_recur"));
    command
        .env_remove("RECUR_DATA_DIR")
        .env_remove("RECUR_CONFIG")
        .env("RECUR_LOG", "warn");
    command
}

/// How long one command of a test may run before it is killed and the test fails: a hung
/// command must fail the run with its log, never stall CI until its global timeout.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// Runs `recur args...`, asserting success within [`COMMAND_DEADLINE`], and returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let output = output_within(recur().args(args), COMMAND_DEADLINE, args);
    assert_success(&output, args);
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// Runs `command` to completion like [`Command::output`], but kills it and panics with what
/// it printed if it is still running after `limit`.
pub fn output_within(command: &mut Command, limit: Duration, what: &[&str]) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("recur starts");
    finish_within(child, limit, what)
}

/// Waits for a spawned child like [`Child::wait_with_output`] (its pipes, if any, are
/// drained meanwhile), but kills it and panics with its stderr if it is still running after
/// `limit`.
pub fn finish_within(mut child: Child, limit: Duration, what: &[&str]) -> Output {
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                std::io::Read::read_to_end(&mut pipe, &mut bytes).expect("read a pipe");
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().expect("kill");
            child.wait().expect("reap");
            let stderr = stderr.join().expect("stderr reader");
            panic!(
                "recur {} still ran after {limit:?} and was killed\nstderr: {}",
                what.join(" "),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

pub fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "recur {} failed with {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `recur args...` expecting one JSON document on stdout.
pub fn run_json(args: &[&str]) -> Value {
    let stdout = run_ok(args);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Writes lines to a file and returns its path.
pub fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create");
    for line in lines {
        writeln!(file, "{line}").expect("write");
    }
    path
}

/// One event line; `extra` is spliced in as more JSON fields.
pub fn event(id: &str, merchant: &str, user: &str, kind: &str, ts: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"event_id":"{id}","merchant_id":"{merchant}","user_id":"{user}","type":"{kind}","ts":"{ts}"{extra}}}"#
    )
}

/// Every line of every file under `dir/rejected`, parsed.
pub fn rejected_lines(data_dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(data_dir.join("rejected")) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
    paths.sort();
    for path in paths {
        for line in std::fs::read_to_string(&path).expect("read").lines() {
            out.push(serde_json::from_str(line).expect("rejected lines are JSON"));
        }
    }
    out
}

/// The first line of a truth file: the generator's counts.
pub fn truth_counts(truth: &Path) -> Value {
    let text = std::fs::read_to_string(truth).expect("truth file");
    let first: Value =
        serde_json::from_str(text.lines().next().expect("summary line")).expect("JSON");
    first["counts"].clone()
}

/// A `recur serve` child process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts `recur serve` on a free port and waits until it listens. It looks for a newer
    /// snapshot every 0.2 s unless `extra` sets `--reload-every`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let reload: &[&str] = if extra.contains(&"--reload-every") {
            &[]
        } else {
            &["--reload-every", "0.2"]
        };
        let mut child = recur()
            .args([
                "serve",
                "--data-dir",
                path_str(data_dir),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(reload)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server prints its address before exiting")
                .expect("readable stderr");
            if let Some(address) = line.strip_prefix("listening on ") {
                break address.trim().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    /// GET a path; returns the status and the JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut response = Self::agent()
            .get(format!("{}{path}", self.base))
            .call()
            .expect("request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().expect("JSON body"))
    }

    /// GET a path with `Authorization: Bearer <key>`; returns the status and the JSON body.
    pub fn get_with_key(&self, path: &str, key: &str) -> (u16, Value) {
        let mut response = Self::agent()
            .get(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {key}"))
            .call()
            .expect("request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().expect("JSON body"))
    }

    /// GET a path; returns the body as text (`/metrics`).
    pub fn get_text(&self, path: &str) -> String {
        Self::agent()
            .get(format!("{}{path}", self.base))
            .call()
            .expect("request")
            .body_mut()
            .read_to_string()
            .expect("text body")
    }

    /// POST a body; returns the status and the JSON body.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let mut response = Self::agent()
            .post(format!("{}{path}", self.base))
            .content_type(content_type)
            .send(body)
            .expect("request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().expect("JSON body"))
    }

    /// Polls `check` until it holds or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(item_id, reason)` of each item of a recommendation list.
pub fn item_reasons(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["item_id"].as_str().expect("id").to_owned(),
                i["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

/// Owned pairs for comparing with [`item_reasons`].
pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// One generated merchant (`m_bakery`) of `users` customers over `days`, ingested into
/// `dir/data`; returns the data directory (not run yet).
pub fn generated_merchant(dir: &Path, users: &str, days: &str) -> PathBuf {
    let events = dir.join("events.ndjson");
    let data = dir.join("data");
    run_ok(&[
        "generate",
        "--out",
        path_str(&events),
        "--merchants",
        "1",
        "--users",
        users,
        "--days",
        days,
    ]);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&events)]);
    data
}

/// Creates an API key of `merchant` with `scope`; returns the key (the last line printed).
pub fn create_key(data_dir: &Path, merchant: &str, scope: &str) -> String {
    let created = run_ok(&[
        "keys",
        "create",
        "--data-dir",
        path_str(data_dir),
        "--merchant",
        merchant,
        "--scope",
        scope,
    ]);
    created.lines().last().expect("a key").trim().to_owned()
}
