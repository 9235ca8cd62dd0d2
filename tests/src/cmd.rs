//! Running external commands with a deadline, and reading their results.
//!
//! Every command the harness runs goes through [`run`]: stdin is closed (or
//! fed from a string), stdout and stderr are captured, and a command that
//! outlives its deadline is killed, so a hung runtime or hook fails the test
//! instead of hanging CI. [`OutputExt`] turns an [`Output`] into text and into
//! readable assertion failures.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Deadline for ordinary commands (`ip`, `nft`, the hook, runtime calls).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for the output pipes to close after the command exited.
/// A background process that inherited them (started by a shell script, say)
/// would otherwise keep the read open forever.
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// `program arg arg ...` of a command, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// What to install when `program` is missing.
fn install_hint(program: &str) -> &'static str {
    match Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
    {
        "ip" => " (apt-get install iproute2)",
        "nft" => " (apt-get install nftables)",
        "nsenter" | "unshare" | "mount" | "umount" => " (apt-get install util-linux)",
        "runc" => " (apt-get install runc)",
        "crun" => " (apt-get install crun)",
        "podman" => " (apt-get install podman)",
        "conntrack" => " (apt-get install conntrack)",
        "ping" => " (apt-get install iputils-ping)",
        "busybox" => " (apt-get install busybox-static)",
        _ => "",
    }
}

/// Spawns `cmd`, panicking with an install hint if the program is missing.
pub fn spawn(cmd: &mut Command) -> Child {
    match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let prog = cmd.get_program().to_string_lossy().into_owned();
            panic!(
                "wirehook-tests: cannot start `{}`: {e}{}",
                describe(cmd),
                install_hint(&prog)
            )
        }
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let h = thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    });
    (buf, h)
}

/// Runs `cmd` to completion with stdin from `stdin` (or /dev/null), stdout and
/// stderr captured, killed after `timeout`. A timed-out command yields a
/// failed [`Output`] whose stderr ends with a `[wirehook-tests] timed out`
/// line. Panics only if the program cannot be started.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    match try_run(cmd, stdin, timeout) {
        Ok(o) => o,
        Err(e) => {
            let prog = cmd.get_program().to_string_lossy().into_owned();
            panic!(
                "wirehook-tests: cannot start `{}`: {e}{}",
                describe(cmd),
                install_hint(&prog)
            )
        }
    }
}

/// [`run`] that reports a program that cannot be started as an error
/// instead of panicking (for clean-up paths in `Drop`).
pub fn try_run(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let writer = stdin.map(|data| {
        let mut w = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = w.write_all(&data);
        })
    });
    let (out, out_h) = reader(child.stdout.take().expect("piped stdout"));
    let (err, err_h) = reader(child.stderr.take().expect("piped stderr"));
    let (status, timed_out) = wait_deadline(&mut child, timeout);
    let grace = Instant::now() + PIPE_GRACE;
    for h in [out_h, err_h] {
        while !h.is_finished() && Instant::now() < grace {
            thread::sleep(Duration::from_millis(5));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
    if let Some(w) = writer {
        if w.is_finished() {
            let _ = w.join();
        }
    }
    let stdout = out.lock().unwrap().clone();
    let mut stderr = err.lock().unwrap().clone();
    if timed_out {
        stderr.extend_from_slice(
            format!(
                "\n[wirehook-tests] timed out after {:?}, killed: {}\n",
                timeout,
                describe(cmd)
            )
            .as_bytes(),
        );
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Waits for `child` until `timeout`, then kills it. Returns its status and
/// whether it had to be killed.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return (st, false),
            Ok(None) => {}
            Err(e) => panic!("wirehook-tests: waiting for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let st = child.wait().expect("wait after kill");
            return (st, true);
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Runs `cmd` with stdout and stderr going to `LOG.out` / `LOG.err` files
/// instead of pipes, then reads them back into an [`Output`]. For commands
/// that leave a process behind holding their stdio (`runc run -d`, whose
/// container inherits it), where a pipe would never reach end-of-file.
pub fn run_to_files(cmd: &mut Command, log: &Path, timeout: Duration) -> Output {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let out_path = log.with_extension("out");
    let err_path = log.with_extension("err");
    let open = |p: &Path| {
        std::fs::File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
    };
    cmd.stdin(Stdio::null())
        .stdout(open(&out_path))
        .stderr(open(&err_path));
    let mut child = spawn(cmd);
    let (status, timed_out) = wait_deadline(&mut child, timeout);
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let mut stderr = std::fs::read(&err_path).unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!(
                "\n[wirehook-tests] timed out after {:?}, killed: {}\n",
                timeout,
                describe(cmd)
            )
            .as_bytes(),
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Text access and assertions on a command's [`Output`].
pub trait OutputExt: Sized {
    /// stdout, lossily decoded.
    fn stdout_str(&self) -> String;
    /// stderr, lossily decoded.
    fn stderr_str(&self) -> String;
    /// Status, stdout and stderr in one block, for failure messages.
    fn report(&self) -> String;
    /// Panics with [`report`](OutputExt::report) unless the command
    /// succeeded; `what` says what was attempted.
    fn expect_success(self, what: &str) -> Self;
    /// Panics unless the command failed (non-zero exit or killed).
    fn expect_failure(self, what: &str) -> Self;
}

impl OutputExt for Output {
    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn report(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout_str().trim_end(),
            self.stderr_str().trim_end()
        )
    }
    #[track_caller]
    fn expect_success(self, what: &str) -> Self {
        if !self.status.success() {
            panic!("{what} failed\n{}", self.report());
        }
        self
    }
    #[track_caller]
    fn expect_failure(self, what: &str) -> Self {
        if self.status.success() {
            panic!(
                "{what} succeeded but was expected to fail\n{}",
                self.report()
            );
        }
        self
    }
}
