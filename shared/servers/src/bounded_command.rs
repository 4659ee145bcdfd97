//! Running a server's own tools (`nginx -t`, `apachectl graceful`, …): an argument list, no
//! shell, a deadline after which the whole process group is killed, and the output kept —
//! truncated and with anything that looks like a secret redacted — for the audit record.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;

/// Most output kept per stream, bytes (the tail is what explains a failure).
const KEEP: usize = 4096;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandReport {
    /// The argument list.
    pub argv: Vec<String>,
    /// The exit code (`None`: killed, by the deadline or a signal).
    pub exit_code: Option<i32>,
    /// Whether it was killed at its deadline.
    pub timed_out: bool,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
    /// The tail of standard output, redacted.
    pub stdout: String,
    /// The tail of standard error, redacted.
    pub stderr: String,
}

impl CommandReport {
    /// Whether it exited with 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// One line for an error message: what ran, how it ended, the last output line.
    pub fn summary(&self) -> String {
        let how = if self.timed_out {
            format!("killed at its {} ms deadline", self.elapsed_ms)
        } else {
            match self.exit_code {
                Some(code) => format!("exited with {code}"),
                None => "ended by a signal".into(),
            }
        };
        let said = [&self.stderr, &self.stdout]
            .iter()
            .flat_map(|s| s.lines().rev())
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default();
        format!("`{}` {how}{said}", self.argv.join(" "))
    }
}

/// Keeps the last [`KEEP`] bytes and redacts secret-looking output as a whole.
fn keep(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(KEEP);
    let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    if certops_core::audit::find_secret(&text).is_some() {
        certops_core::audit::REDACTED.to_string()
    } else {
        text
    }
}

/// Runs `argv` with `timeout`. A command that cannot start is an `Err` naming it; one that
/// fails or overruns is an `Ok` report the caller judges.
pub async fn run(argv: &[String], timeout: Duration) -> Result<CommandReport, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "no command to run".to_string())?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the deadline kills what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", argv.join(" ")))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let pid = child.id();
    let waited = tokio::time::timeout(timeout, async {
        let (status, out, err) = tokio::join!(child.wait(), read_out, read_err);
        (status, out, err)
    })
    .await;
    match waited {
        Ok((status, out, err)) => Ok(CommandReport {
            argv: argv.to_vec(),
            exit_code: status.ok().and_then(|s| s.code()),
            timed_out: false,
            elapsed_ms: started.elapsed().as_millis() as u64,
            stdout: keep(&out),
            stderr: keep(&err),
        }),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            Ok(CommandReport {
                argv: argv.to_vec(),
                exit_code: None,
                timed_out: true,
                elapsed_ms: started.elapsed().as_millis() as u64,
                stdout: String::new(),
                stderr: String::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn output_and_exit_code_are_kept() {
        let r = run(
            &argv(&["sh", "-c", "echo hi; echo oops >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.stdout, "hi\n");
        assert!(
            r.summary().contains("exited with 3: oops"),
            "{}",
            r.summary()
        );
        assert!(!r.succeeded());
    }

    #[tokio::test]
    async fn a_hanging_command_and_its_children_are_killed_at_the_deadline() {
        let started = Instant::now();
        let r = run(
            &argv(&["sh", "-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert!(r.timed_out);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(r.summary().contains("deadline"), "{}", r.summary());
    }

    #[tokio::test]
    async fn secrets_in_output_are_redacted_and_missing_programs_named() {
        let r = run(
            &argv(&[
                "sh",
                "-c",
                "echo 'Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123'",
            ]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(r.stdout, "[REDACTED]");
        let e = run(
            &argv(&["/nonexistent/certops-tool"]),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(e.contains("/nonexistent/certops-tool"), "{e}");
    }
}
