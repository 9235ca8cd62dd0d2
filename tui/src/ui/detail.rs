//! The detail view of the selected namespace: names, container, processes,
//! links with counters and rates, addresses, routes, a traffic sparkline.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use ratatui::Frame;

use super::{state_style, DIM, ERROR, HEADER, RX, TX};
use crate::app::App;
use crate::format;

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        if w > 0 {
            t.push(if n > w {
                '…'
            } else {
                s.chars().last().unwrap_or(' ')
            });
        }
        t + " "
    } else {
        format!("{s}{} ", " ".repeat(w - n))
    }
}

pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    let scroll = render(f, app, area);
    app.scroll = scroll;
}

fn render(f: &mut Frame, app: &App, area: Rect) -> u16 {
    let Some(ns) = app.selected_ns() else {
        f.render_widget(Paragraph::new("no namespace selected"), area);
        return 0;
    };
    let peer_name = |ino: Option<u64>| -> String {
        match ino.and_then(|i| app.snap.namespace(i)) {
            Some(p) if p.inode == ns.inode => "here".into(),
            Some(p) => p.display_name(),
            None => "?".into(),
        }
    };
    let mut lines: Vec<Line> = Vec::new();
    let names: Vec<String> = ns
        .names
        .iter()
        .map(|n| format!("{}:{}", n.source.as_str(), n.name))
        .collect();
    lines.push(Line::from(vec![
        Span::styled(ns.display_name(), HEADER),
        Span::raw(format!("  netns {}  {}", ns.inode, names.join(" "))),
    ]));
    if let Some(c) = &ns.container {
        let mut s = format!(
            "container {}  mode {}  networks {}",
            c.id,
            c.mode,
            if c.networks.is_empty() {
                "-".into()
            } else {
                c.networks.join(",")
            }
        );
        if !c.sharers.is_empty() {
            s.push_str(&format!("  shared with {}", c.sharers.join(",")));
        }
        lines.push(Line::from(s));
    }
    let procs: Vec<String> = ns
        .processes
        .iter()
        .map(|p| format!("{}[{}]", p.comm, p.pid))
        .collect();
    let more = ns.process_count.saturating_sub(ns.processes.len());
    lines.push(Line::from(format!(
        "processes {}: {}{}",
        ns.process_count,
        if procs.is_empty() {
            "-".to_string()
        } else {
            procs.join(" ")
        },
        if more > 0 {
            format!(" +{more}")
        } else {
            String::new()
        }
    )));
    if let Some(e) = &ns.error {
        lines.push(Line::from(Span::styled(
            format!("cannot read this namespace: {e}"),
            ERROR,
        )));
    }
    lines.push(Line::from(""));
    // Columns by width: narrow terminals drop MAC, then MTU, MASTER,
    // the byte totals and errors.
    let cols: [(&str, usize, u8); 12] = [
        ("LINK", 12, 0),
        ("KIND", 8, 0),
        ("STATE", 8, 0),
        ("MTU", 5, 1),
        ("MAC", 17, 2),
        ("MASTER", 10, 1),
        ("PEER", 22, 0),
        ("RX/s", 8, 0),
        ("TX/s", 8, 0),
        ("RX", 7, 1),
        ("TX", 7, 1),
        ("ERR/DROP", 9, 1),
    ];
    let level = if area.width >= 136 {
        2
    } else if area.width >= 100 {
        1
    } else {
        0
    };
    let shown = |i: usize| cols[i].2 <= level;
    lines.push(
        Line::from(
            cols.iter()
                .enumerate()
                .filter(|(i, _)| shown(*i))
                .map(|(_, (t, w, _))| pad(t, *w))
                .collect::<String>(),
        )
        .style(HEADER),
    );
    for l in &ns.links {
        let r = l.rate.unwrap_or_default();
        let peer = match &l.peer {
            Some(p) => format!(
                "{}@{}",
                p.ifname
                    .clone()
                    .unwrap_or_else(|| format!("#{}", p.ifindex)),
                peer_name(p.netns_inode)
            ),
            None => match (&l.parent, l.parent_netns_inode) {
                (Some(par), None) => format!("on {par}"),
                (Some(par), Some(i)) => format!("on {par}@{}", peer_name(Some(i))),
                (None, Some(i)) => format!("on @{}", peer_name(Some(i))),
                _ => "-".into(),
            },
        };
        let s = &l.stats;
        let errs = s.rx_errors + s.tx_errors;
        let drops = s.rx_dropped + s.tx_dropped;
        let ed = format!("{errs}/{drops}");
        let cells: [(String, Style); 12] = [
            (l.name.clone(), Style::new()),
            (l.kind.clone(), Style::new()),
            (l.state.clone(), state_style(&l.state)),
            (l.mtu.to_string(), Style::new()),
            (l.mac.clone().unwrap_or_else(|| "-".into()), Style::new()),
            (l.master.clone().unwrap_or_else(|| "-".into()), Style::new()),
            (peer, Style::new()),
            (format::rate(r.rx_bytes, app.bits), RX),
            (format::rate(r.tx_bytes, app.bits), TX),
            (format::bytes(s.rx_bytes), Style::new()),
            (format::bytes(s.tx_bytes), Style::new()),
            (ed, if errs + drops > 0 { ERROR } else { DIM }),
        ];
        lines.push(Line::from(
            cells
                .into_iter()
                .enumerate()
                .filter(|(i, _)| shown(*i))
                .map(|(i, (t, st))| Span::styled(pad(&t, cols[i].1), st))
                .collect::<Vec<_>>(),
        ));
    }
    lines.push(Line::from(""));
    lines.push(Line::from("ADDRESSES").style(HEADER));
    for a in &ns.addresses {
        lines.push(Line::from(format!(
            "  {} {}",
            pad(&a.ifname, 12),
            a.address
        )));
    }
    lines.push(Line::from("ROUTES (main table)").style(HEADER));
    for r in &ns.routes {
        let mut s = format!("  {}", r.destination);
        if let Some(g) = &r.gateway {
            s.push_str(&format!(" via {g}"));
        }
        if let Some(d) = &r.dev {
            s.push_str(&format!(" dev {d}"));
        }
        lines.push(Line::from(s));
    }
    lines.push(Line::from(format!("PROCESSES ({})", ns.process_count)).style(HEADER));
    for p in &ns.processes {
        let mut spans = vec![
            Span::raw(format!("  {:>7} ", p.pid)),
            Span::raw(pad(&p.comm, 15)),
        ];
        if let Some(c) = &p.cmd {
            spans.push(Span::styled(c.clone(), DIM));
        }
        lines.push(Line::from(spans));
    }
    if more > 0 {
        lines.push(Line::from(Span::styled(format!("  +{more} more"), DIM)));
    }
    let hist: Vec<u64> = app
        .history
        .get(&ns.inode)
        .map(|h| h.iter().copied().collect())
        .unwrap_or_default();
    let spark_h = if area.height >= 16 { 4 } else { 0 };
    let [top, bottom] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(spark_h)]).areas(area);
    let max_scroll = (lines.len() as u16).saturating_sub(top.height);
    let scroll = app.scroll.min(max_scroll);
    f.render_widget(Paragraph::new(lines).scroll((scroll, 0)), top);
    if spark_h > 0 {
        let w = bottom.width.saturating_sub(2) as usize;
        let data: Vec<u64> = hist.iter().rev().take(w).rev().copied().collect();
        let rate = ns.totals.rate.unwrap_or_default();
        let title = format!(
            " traffic: rx {}  tx {} ",
            format::rate(rate.rx_bytes, app.bits),
            format::rate(rate.tx_bytes, app.bits)
        );
        f.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(title))
                .data(&data)
                .style(RX),
            bottom,
        );
    }
    scroll
}
