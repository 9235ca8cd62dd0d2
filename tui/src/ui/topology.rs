//! The topology view: per namespace, its bridges with their ports and the
//! namespaces behind them (through veth peers), overlay (vxlan) devices
//! with the remote hosts wirehook programmed on them (on an encrypted
//! network each one's WireGuard handshake and traffic, stale handshakes
//! in the warning style), and the macvlan/ipvlan devices hanging on its
//! links.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{state_style, DIM, HEADER, RX, STALE, TX};
use crate::app::App;
use crate::format;
use wirehook_shared::inspect::{Link, Namespace, Snapshot, WireguardDevice, WireguardPeer};

fn peer_desc(snap: &Snapshot, here: &Namespace, l: &Link) -> String {
    match &l.peer {
        Some(p) => {
            let name = p
                .ifname
                .clone()
                .unwrap_or_else(|| format!("#{}", p.ifindex));
            match p.netns_inode.and_then(|i| snap.namespace(i)) {
                Some(n) if n.inode == here.inode => format!("⇄ {name}"),
                Some(n) => format!("⇄ {name} @ {} ({})", n.display_name(), n.mode()),
                None => format!("⇄ {name} @ unknown namespace"),
            }
        }
        None => String::new(),
    }
}

fn rate_spans(l: &Link, bits: bool) -> Vec<Span<'static>> {
    let r = l.rate.unwrap_or_default();
    vec![
        Span::raw("  "),
        Span::styled(format!("rx {}", format::rate(r.rx_bytes, bits)), RX),
        Span::raw(" "),
        Span::styled(format!("tx {}", format::rate(r.tx_bytes, bits)), TX),
    ]
}

/// A WireGuard peer's handshake, bytes and rates, after its host.
fn wireguard_spans(p: &WireguardPeer, bits: bool) -> Vec<Span<'static>> {
    let mut s = vec![
        Span::raw(", "),
        Span::styled(
            p.handshake_text(),
            if p.stale { STALE } else { Style::new() },
        ),
    ];
    s.push(Span::styled(
        format!(
            "  {} in, {} out",
            format::bytes(p.rx_bytes),
            format::bytes(p.tx_bytes)
        ),
        DIM,
    ));
    if let Some(r) = p.rate {
        s.push(Span::raw("  "));
        s.push(Span::styled(
            format!("rx {}", format::rate(r.rx_bytes, bits)),
            RX,
        ));
        s.push(Span::raw(" "));
        s.push(Span::styled(
            format!("tx {}", format::rate(r.tx_bytes, bits)),
            TX,
        ));
    }
    s
}

/// The peers of an overlay network, under its VXLAN device; on an
/// encrypted one (`wg`: its WireGuard device as read) each with its
/// handshake and traffic, and keys the device has that no peer of the
/// network has last.
fn peer_lines(
    out: &mut Vec<Line<'static>>,
    st: &wirehook_shared::overlay::LocalState,
    wg: Option<&WireguardDevice>,
    bits: bool,
) {
    let Some(wg) = wg.filter(|_| !st.wireguard.is_empty()) else {
        for (i, p) in st.peers.iter().enumerate() {
            let branch = if i + 1 == st.peers.len() {
                "└─"
            } else {
                "├─"
            };
            out.push(Line::from(format!("    {branch} peer {}", p.describe())));
        }
        return;
    };
    if let Some(e) = &wg.error {
        out.push(Line::from(Span::styled(
            format!("    {}: {e}", wg.device),
            STALE,
        )));
    }
    // (what, its WireGuard peer, or what `ps` says when there is none)
    let mut rows: Vec<(String, Result<&WireguardPeer, &str>)> = st
        .peers
        .iter()
        .map(|p| {
            let w = match p.wg_key.as_deref() {
                None => Err(wirehook_shared::wireguard::NO_KEY_TEXT),
                Some(k) => wg
                    .peers
                    .iter()
                    .find(|w| w.public_key == k)
                    .ok_or(wirehook_shared::wireguard::NOT_A_PEER_TEXT),
            };
            (format!("peer {}", p.describe()), w)
        })
        .collect();
    for w in &wg.peers {
        if !st
            .peers
            .iter()
            .any(|p| p.wg_key.as_deref() == Some(w.public_key.as_str()))
        {
            let short: String = w.public_key.chars().take(8).collect();
            rows.push((
                format!("key {short}… via {}", w.endpoint.as_deref().unwrap_or("-")),
                Ok(w),
            ));
        }
    }
    for (i, (what, w)) in rows.iter().enumerate() {
        let branch = if i + 1 == rows.len() {
            "└─"
        } else {
            "├─"
        };
        let mut s = vec![Span::raw(format!("    {branch} {what}"))];
        match w {
            Ok(w) => s.extend(wireguard_spans(w, bits)),
            // The device was not read: its error line says why.
            Err(_) if wg.error.is_some() => {}
            Err(why) => {
                s.push(Span::raw(", "));
                s.push(Span::styled(*why, STALE));
            }
        }
        out.push(Line::from(s));
    }
}

/// The topology as lines (also used by tests).
pub fn lines(app: &App) -> Vec<Line<'static>> {
    let snap = &app.snap;
    let mut out = Vec::new();
    for ns in app.rows() {
        let bridges: Vec<&Link> = ns.links.iter().filter(|l| l.kind == "bridge").collect();
        let overlays: Vec<&Link> = ns.links.iter().filter(|l| l.kind == "vxlan").collect();
        // macvlan/ipvlan children anywhere whose parent is a link of this namespace.
        let mut children: Vec<(String, &Namespace, &Link)> = Vec::new();
        for other in &snap.namespaces {
            for l in &other.links {
                if !matches!(l.kind.as_str(), "macvlan" | "ipvlan") {
                    continue;
                }
                let parent_ns = l.parent_netns_inode.unwrap_or(other.inode);
                if let (Some(p), true) = (&l.parent, parent_ns == ns.inode) {
                    children.push((p.clone(), other, l));
                }
            }
        }
        if bridges.is_empty() && overlays.is_empty() && children.is_empty() {
            continue;
        }
        out.push(Line::from(vec![
            Span::styled(ns.display_name(), HEADER),
            Span::styled(format!("  netns {} {}", ns.inode, ns.mode()), DIM),
        ]));
        for b in &bridges {
            let mut s = vec![
                Span::raw("  bridge "),
                Span::styled(b.name.clone(), HEADER),
                Span::raw(" "),
                Span::styled(b.state.clone(), state_style(&b.state)),
            ];
            let addrs: Vec<&str> = ns
                .addresses
                .iter()
                .filter(|a| a.ifindex == b.index)
                .map(|a| a.address.as_str())
                .collect();
            if !addrs.is_empty() {
                s.push(Span::raw(format!(" {}", addrs.join(" "))));
            }
            s.extend(rate_spans(b, app.bits));
            out.push(Line::from(s));
            let ports: Vec<&Link> = ns
                .links
                .iter()
                .filter(|l| l.master.as_deref() == Some(b.name.as_str()))
                .collect();
            for (i, p) in ports.iter().enumerate() {
                let branch = if i + 1 == ports.len() {
                    "└─"
                } else {
                    "├─"
                };
                let mut s = vec![
                    Span::raw(format!("    {branch} {} ", p.name)),
                    Span::styled(p.state.clone(), state_style(&p.state)),
                    Span::raw(format!(" {}", peer_desc(snap, ns, p))),
                ];
                s.extend(rate_spans(p, app.bits));
                out.push(Line::from(s));
            }
            if ports.is_empty() {
                out.push(Line::from(Span::styled("    (no ports)", DIM)));
            }
        }
        for o in &overlays {
            let mut s = vec![Span::raw(format!(
                "  overlay {} ({}{})",
                o.name,
                o.kind,
                o.parent
                    .as_ref()
                    .map(|p| format!(" on {p}"))
                    .unwrap_or_default()
            ))];
            if let Some(m) = &o.master {
                s.push(Span::raw(format!(" port of {m}")));
            }
            s.extend(rate_spans(o, app.bits));
            out.push(Line::from(s));
            // wirehook's overlay network on this device: its share, peers.
            if let Some(st) = snap
                .overlays
                .iter()
                .find(|st| st.vxlan == o.name && st.vxlan_index == o.index)
            {
                out.push(Line::from(Span::styled(
                    format!("    network {}", st.summary()),
                    DIM,
                )));
                let wg = snap.wireguard.iter().find(|w| w.network == st.network);
                peer_lines(&mut out, st, wg, app.bits);
            }
        }
        let mut parents: Vec<&String> = children.iter().map(|(p, _, _)| p).collect();
        parents.sort();
        parents.dedup();
        for p in parents {
            out.push(Line::from(format!("  {p} (parent)")));
            let kids: Vec<_> = children.iter().filter(|(q, _, _)| q == p).collect();
            for (i, (_, owner, l)) in kids.iter().enumerate() {
                let branch = if i + 1 == kids.len() {
                    "└─"
                } else {
                    "├─"
                };
                let mut s = vec![Span::raw(format!(
                    "    {branch} {} {} @ {}",
                    l.kind,
                    l.name,
                    owner.display_name()
                ))];
                s.extend(rate_spans(l, app.bits));
                out.push(Line::from(s));
            }
        }
    }
    if out.is_empty() {
        out.push(Line::from(Span::styled(
            "no bridges, overlays or macvlan/ipvlan parents",
            DIM,
        )));
    }
    out
}

pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    let l = lines(app);
    let max = (l.len() as u16).saturating_sub(area.height);
    app.scroll = app.scroll.min(max);
    f.render_widget(Paragraph::new(l).scroll((app.scroll, 0)), area);
}
