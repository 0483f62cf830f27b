//! Headless chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, NUL-separated
//! JSON), so tests need no WebSocket client and no driver binary. Killed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::TempDir;

pub struct Browser {
    child: Child,
    commands: File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// The chromium binary, if installed (CI installs it: .ci/run).
pub fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

impl Browser {
    /// Starts chromium on `url` with a `width` x `height` window.
    pub fn open(url: &str, width: u32, height: u32) -> Browser {
        let bin = chromium().expect("chromium is not installed (apt-get install chromium)");
        let profile = TempDir::new("chromium");
        let (cmd_read, cmd_write) = pipe();
        let (ans_read, ans_write) = pipe();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-pipe",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            File::create(profile.path().join("chromium.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
        let (r, w) = (
            std::os::fd::AsRawFd::as_raw_fd(&cmd_read),
            std::os::fd::AsRawFd::as_raw_fd(&ans_write),
        );
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between
        // fork and exec. Both ends are first copied above fd 10: a pipe end
        // that already is fd 3 or 4 would otherwise be clobbered (w == 3) or
        // keep its close-on-exec flag (dup2(3, 3) is a no-op), and chromium
        // would start without its pipe (seen as a broken pipe under load).
        unsafe {
            cmd.pre_exec(move || {
                let r2 = libc::fcntl(r, libc::F_DUPFD, 10);
                let w2 = libc::fcntl(w, libc::F_DUPFD, 10);
                if r2 < 0
                    || w2 < 0
                    || libc::dup2(r2, 3) < 0
                    || libc::dup2(w2, 4) < 0
                    || libc::close(r2) < 0
                    || libc::close(w2) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(cmd_read);
        drop(ans_write);
        let (tx, answers) = mpsc::channel();
        let reader = File::from(ans_read);
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            loop {
                let mut buf = Vec::new();
                match r.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop_if(|b| *b == 0);
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            commands: File::from(cmd_write),
            answers,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        // Attach to the page the command line opened.
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = loop {
            let t = b.send(None, "Target.getTargets", json!({}));
            if let Some(p) = t["targetInfos"]
                .as_array()
                .and_then(|a| a.iter().find(|i| i["type"] == "page"))
            {
                break p["targetId"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "chromium opened no page");
            std::thread::sleep(Duration::from_millis(100));
        };
        let att = b.send(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        b.session = att["sessionId"].as_str().unwrap().to_string();
        b
    }

    /// Sends one command and waits for its answer's `result` (panics on an error).
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            let log = std::fs::read_to_string(self._profile.path().join("chromium.log"))
                .unwrap_or_default();
            panic!("chromium went away ({e}); its stderr:\n{log}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method}: {e}"));
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page and returns its value (JSON-serializable).
    pub fn eval(&mut self, expr: &str) -> Value {
        self.try_eval(expr)
            .unwrap_or_else(|ex| panic!("{expr}: {ex}"))
    }

    /// Like [`Browser::eval`], with the exception thrown as the error.
    pub fn try_eval(&mut self, expr: &str) -> Result<Value, Value> {
        let session = self.session.clone();
        let r = self.send(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        match r.get("exceptionDetails") {
            Some(ex) => Err(ex.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Polls `expr` until it is `true` or `timeout` passes (an exception, e.g.
    /// while the page is still loading, counts as not yet).
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_eval(expr) == Ok(json!(true)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Emulates a phone-sized screen (or back to a desktop one with `mobile` false).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        let session = self.session.clone();
        self.send(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// A PNG of the page as it is, the whole page (not only the window).
    pub fn screenshot(&mut self) -> Vec<u8> {
        let session = self.session.clone();
        let r = self.send(
            Some(&session),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64_decode(r["data"].as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (RFC 4648 §4), padding optional.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ"), b"hello world");
    assert_eq!(base64_decode("YQ=="), b"a");
    assert_eq!(base64_decode(""), b"");
}
