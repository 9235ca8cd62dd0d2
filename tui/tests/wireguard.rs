//! Encrypted overlay networks in wiretop: each WireGuard peer's handshake
//! and traffic under its overlay in the topology view and in the JSON,
//! stale handshakes in their own style, drawn from fixed data (the real
//! reading is checked in the VM test, `tests/tests/vm_wireguard.rs`).

use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use wirehook_shared::inspect::{Snapshot, WireguardDevice};
use wirehook_shared::wireguard::{encode_key, DeviceState, PeerState};
use wiretop::app::View;
use wiretop::source::{demo_snapshot, rated, FixedSource};
use wiretop::{ui, App};

/// The demo host at `tick`, its encrypted network's device replaced by
/// one whose node-2 handshook 12 s ago and node-3 `node3_age` s ago,
/// plus a key no host of the network has.
fn frame(tick: u64, node2_rx: u64, node3_age: u64) -> Snapshot {
    let mut s = demo_snapshot(tick, 1.0);
    let now = s.taken_at as u64;
    let st = s.overlays[0].clone();
    let key = |host: &str| {
        let k = st
            .peers
            .iter()
            .find(|p| p.host == host)
            .and_then(|p| p.wg_key.as_deref())
            .expect("the demo's peers have keys");
        wirehook_shared::wireguard::decode_key(k).unwrap()
    };
    let dev = DeviceState {
        listen_port: 51862,
        public_key: None,
        peers: vec![
            PeerState {
                public_key: key("node-3"),
                endpoint: Some("192.0.2.13:51862".parse().unwrap()),
                last_handshake: now - node3_age,
                rx_bytes: 500,
                tx_bytes: 700,
                ..Default::default()
            },
            PeerState {
                public_key: key("node-2"),
                endpoint: Some("192.0.2.12:51862".parse().unwrap()),
                last_handshake: now - 12,
                rx_bytes: node2_rx,
                tx_bytes: 4_000,
                ..Default::default()
            },
            PeerState {
                public_key: [9; 32],
                endpoint: Some("192.0.2.99:51862".parse().unwrap()),
                ..Default::default()
            },
        ],
    };
    s.wireguard = vec![WireguardDevice::new(&st, Ok(&dev), now)];
    s
}

fn topology(frames: Vec<Snapshot>) -> (App, Terminal<TestBackend>) {
    let mut src = FixedSource::new(frames);
    let mut prev = None;
    let mut app = App::new(1.0);
    app.apply(rated(&mut src, &mut prev));
    app.apply(rated(&mut src, &mut prev));
    app.view = View::Topology;
    let mut t = Terminal::new(TestBackend::new(140, 30)).unwrap();
    t.draw(|f| ui::draw(f, &mut app)).unwrap();
    (app, t)
}

/// The screen line holding `text` and where in it `text` starts.
fn find(t: &Terminal<TestBackend>, text: &str) -> (String, u16, u16) {
    let buf = t.backend().buffer();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        if let Some(pos) = line.find(text) {
            let x = line[..pos].chars().count() as u16;
            return (line, x, y);
        }
    }
    panic!("{text:?} not on screen:\n{}", t.backend());
}

#[test]
fn topology_shows_each_peers_handshake_and_traffic() {
    let (_, t) = topology(vec![frame(3, 10_000, 30), frame(4, 12_000, 400)]);
    let buf = t.backend().buffer();
    let (heading, _, _) = find(&t, "network mesh");
    assert!(heading.contains("encrypted over wg-mesh"), "{heading}");
    // node-2: the network's order, fresh handshake in the plain style,
    // bytes and the rate between the two readings.
    let (l2, _, y) = find(&t, "peer node-2");
    assert!(
        l2.contains("10.200.2.0/24 via 192.0.2.12, handshake 12 s ago")
            && l2.contains("12KB in, 4.0KB out")
            && l2.contains("rx 2.0KB/s tx 0B/s"),
        "{l2}"
    );
    let (l3, _, y3) = find(&t, "peer node-3");
    assert!(y3 > y, "node-2 before node-3 as the network lists them");
    assert!(l3.contains("handshake 400 s ago"), "{l3}");
    let (_, hx, hy) = find(&t, "handshake 12 s ago");
    assert_ne!(
        buf[(hx, hy)].fg,
        Color::Yellow,
        "a fresh handshake is plain"
    );
    let (_, sx, sy) = find(&t, "handshake 400 s ago");
    assert_eq!(
        buf[(sx, sy)].fg,
        Color::Yellow,
        "older than the reject-after time: stands out"
    );
    // A key on the device that no host of the network has is shown too.
    let (lk, kx, ky) = find(&t, "key CQkJCQkJ");
    assert!(lk.contains("via 192.0.2.99:51862"), "{lk}");
    let (_, nx, ny) = find(&t, "no handshake yet");
    assert_eq!(ny, ky, "{lk}");
    assert!(nx > kx);
    assert_ne!(
        buf[(nx, ny)].fg,
        Color::Yellow,
        "nothing sent to it, nothing missed"
    );
}

#[test]
fn json_carries_the_peers_handshakes() {
    let mut src = FixedSource::new(vec![frame(3, 10_000, 30), frame(4, 12_000, 400)]);
    let mut prev = None;
    rated(&mut src, &mut prev);
    let v = serde_json::to_value(rated(&mut src, &mut prev)).unwrap();
    let wg = &v["wireguard"][0];
    assert_eq!(wg["network"], "mesh", "{wg}");
    assert_eq!(wg["device"], "wg-mesh", "{wg}");
    assert!(wg.get("error").is_none(), "{wg}");
    let peers = wg["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3, "{wg}");
    assert_eq!(peers[0]["host"], "node-2");
    assert_eq!(peers[0]["handshake_age"], 12);
    assert_eq!(peers[0]["stale"], false);
    assert_eq!(peers[0]["rate"]["rx_bytes"], 2000.0);
    assert_eq!(peers[1]["host"], "node-3");
    assert_eq!(peers[1]["stale"], true);
    assert!(peers[2].get("host").is_none());
    assert_eq!(peers[2]["public_key"], encode_key(&[9; 32]));
    assert_eq!(peers[2]["last_handshake"], 0);
    assert!(peers[2].get("handshake_age").is_none());
}

#[test]
fn an_unreadable_device_is_one_line_and_a_plain_overlay_none() {
    // The device could not be read: one line saying why, the peers as
    // the network has them, nothing else odd.
    let mut s = demo_snapshot(3, 1.0);
    let st = s.overlays[0].clone();
    s.wireguard = vec![WireguardDevice::new(
        &st,
        Err("wg-mesh does not exist on this host (not joined yet)".into()),
        s.taken_at as u64,
    )];
    let (_, t) = topology(vec![s.clone(), s]);
    let (l, x, y) = find(&t, "wg-mesh: wg-mesh does not exist");
    assert_eq!(t.backend().buffer()[(x, y)].fg, Color::Yellow, "{l}");
    let text = t.backend().to_string();
    assert_eq!(text.matches("does not exist").count(), 1, "{text}");
    assert!(text.contains("└─ peer node-3 10.200.3.0/24 via 192.0.2.13"));
    assert!(!text.contains("handshake"), "{text}");

    // A plain overlay: no WireGuard in the view or the JSON.
    let mut s = demo_snapshot(3, 1.0);
    s.overlays[0].wireguard.clear();
    for p in &mut s.overlays[0].peers {
        p.wg_key = None;
    }
    s.wireguard.clear();
    let v = serde_json::to_value(&s).unwrap();
    assert!(v.get("wireguard").is_none(), "{v}");
    let (_, t) = topology(vec![s.clone(), s]);
    let text = t.backend().to_string();
    let (l, _, _) = find(&t, "peer node-2");
    assert_eq!(
        l.trim_end(),
        "    ├─ peer node-2 10.200.2.0/24 via 192.0.2.12"
    );
    assert!(
        !text.contains("handshake") && !text.contains("encrypted"),
        "{text}"
    );
}

#[test]
fn a_host_without_a_key_or_peer_says_so_as_ps_does() {
    // node-3 has published no key yet; node-2's key is not on the device.
    let mut s = demo_snapshot(3, 1.0);
    s.overlays[0].peers[1].wg_key = None;
    let st = s.overlays[0].clone();
    let dev = DeviceState::default();
    s.wireguard = vec![WireguardDevice::new(&st, Ok(&dev), s.taken_at as u64)];
    let (_, t) = topology(vec![s.clone(), s]);
    let (l2, _, _) = find(&t, "peer node-2");
    assert!(l2.contains("192.0.2.12, not a WireGuard peer"), "{l2}");
    let (l3, x, y) = find(&t, "no WireGuard key");
    assert!(l3.contains("peer node-3"), "{l3}");
    assert_eq!(t.backend().buffer()[(x, y)].fg, Color::Yellow, "{l3}");
}
