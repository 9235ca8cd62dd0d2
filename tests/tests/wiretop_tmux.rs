//! End to end: the real `wiretop` binary in a tmux pane, driven with
//! send-keys and read with capture-pane: start, move, filter, open the
//! detail, sort by a mouse click on a title, quit cleanly (terminal
//! restored, exit status 0).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use wirehook_tests::*;

fn wiretop_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("wiretop");
    assert!(
        bin.exists(),
        "wiretop is missing at {}: build it first: cargo build --workspace",
        bin.display()
    );
    bin
}

struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux is needed (apt-get install tmux): {e}"))
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", &self.0];
        a.extend_from_slice(keys);
        self.run(&a).expect_success("tmux send-keys");
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.0])
            .stdout_str()
    }
    /// Wait (bounded) until the pane shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            if Instant::now() > end {
                panic!("pane never showed {text:?}; it shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Tmux {
    /// Wait (bounded) until the pane no longer shows `text`.
    fn wait_until_gone(&self, text: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if !s.contains(text) {
                return;
            }
            if Instant::now() > end {
                panic!("pane still shows {text:?}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn interactive_session() {
    let host = TestHost::new("wttmux");
    let name = host.name().to_string();
    // Something to find: a veth from the test host into a named namespace.
    let peer = format!("{name}-peer");
    let out = Command::new("sh")
        .args([
            "-ec",
            &format!(
                "ip netns add {peer}
             ip -n {name} link add tmv0 type veth peer name eth0 netns {peer}
             ip -n {name} link set tmv0 up"
            ),
        ])
        .output()
        .unwrap();
    let cleanup = scopeguard(peer.clone());
    out.expect_success("make a veth");
    let session = format!("wiretop-{}", std::process::id());
    let t = Tmux(session.clone());
    let cmd = format!(
        "{} --interval 0.5; echo WIRETOP-EXIT=$?; sleep 60",
        wiretop_bin().display()
    );
    t.run(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "140",
        "-y",
        "40",
        &cmd,
    ])
    .expect_success("tmux new-session");
    t.wait_for("namespaces");
    let s = t.wait_for("NAME▲");
    // A mouse click on the RX title sorts by it (largest first): an SGR
    // mouse report, as a terminal sends it, typed into the pane.
    let (row, line) = s
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("NAME▲"))
        .expect("header row");
    let col = line
        .find(" RX ")
        .map(|b| line[..b].chars().count() + 1)
        .expect("RX title");
    t.keys(&["-l", &format!("\x1b[<0;{};{}M", col + 1, row + 1)]);
    t.keys(&["-l", &format!("\x1b[<0;{};{}m", col + 1, row + 1)]);
    t.wait_for("RX▼");
    t.keys(&["1"]); // back to NAME (keyboard)
    t.wait_for("NAME▲");
    // Move down and back up.
    t.keys(&["Down", "Down", "Up"]);
    // Filter down to our namespace by name.
    t.keys(&["/"]);
    t.keys(&["-l", &peer]);
    let s = t.wait_for(&format!("filter: {peer}"));
    assert!(s.contains(&peer), "{s}");
    t.keys(&["Enter"]);
    // Open the detail: its eth0 and the peer in the test host.
    t.keys(&["Enter"]);
    let s = t.wait_for("[detail]");
    assert!(s.contains("eth0"), "{s}");
    assert!(s.contains("tmv0@"), "the veth peer is named: {s}");
    // Help, topology, back, quit.
    t.keys(&["?"]);
    t.wait_for("wiretop help");
    t.keys(&["Escape"]);
    // Wait for the help to close before the next key: a lone ESC read
    // together with the next byte is Alt+that key.
    t.wait_until_gone("wiretop help");
    t.keys(&["t"]);
    t.wait_for("[topology]");
    t.keys(&["q"]);
    let s = t.wait_for("WIRETOP-EXIT=");
    assert!(s.contains("WIRETOP-EXIT=0"), "wiretop exits 0: {s}");
    // The terminal is restored: the alternate screen is gone.
    assert!(
        !s.contains("[topology]"),
        "alternate screen left behind: {s}"
    );
    drop(cleanup);
}

struct NsGuard(String);
impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}
fn scopeguard(n: String) -> NsGuard {
    NsGuard(n)
}
