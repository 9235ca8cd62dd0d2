//! Drawing: a header line, the current view, a footer with keys or the
//! filter prompt, and the help overlay on top.

mod detail;
mod help;
mod list;
mod topology;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::app::{App, View};
use crate::format;

/// Colours with meaning (style assertions in the tests use these).
pub const ERROR: Style = Style::new().fg(Color::Red);
pub const DOWN: Style = Style::new().fg(Color::Red);
/// A WireGuard handshake older than the reject-after time, or none while
/// traffic is sent.
pub const STALE: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
pub const UP: Style = Style::new().fg(Color::Green);
pub const PAUSED: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::Yellow)
    .add_modifier(Modifier::BOLD);
pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
pub const HEADER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
pub const DIM: Style = Style::new().fg(Color::DarkGray);
pub const RX: Style = Style::new().fg(Color::Green);
pub const TX: Style = Style::new().fg(Color::Magenta);

pub fn draw(f: &mut Frame, app: &mut App) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    header(f, app, top);
    match app.view {
        View::List => list::draw(f, app, body),
        View::Detail => detail::draw(f, app, body),
        View::Topology => topology::draw(f, app, body),
    }
    footer(f, app, bottom);
    if app.help {
        help::draw(f, f.area());
    }
}

fn header(f: &mut Frame, app: &App, area: Rect) {
    let s = &app.snap;
    let links: usize = s.namespaces.iter().map(|n| n.links.len()).sum();
    let rate = s.totals.rate.unwrap_or_default();
    let mut spans = vec![
        Span::styled("wiretop", HEADER),
        Span::raw(format!(
            "  {} namespaces  {} links  ",
            s.namespaces.len(),
            links
        )),
        Span::styled(format!("rx {}", format::rate(rate.rx_bytes, app.bits)), RX),
        Span::raw("  "),
        Span::styled(format!("tx {}", format::rate(rate.tx_bytes, app.bits)), TX),
        Span::raw(format!("  every {}s", trim_float(app.interval))),
    ];
    if let Some(u) = app.usage {
        // wiretop's own cost, so its overhead is in plain sight.
        spans.push(Span::styled(
            format!(
                "  self {}% {}",
                trim_float((u.cpu_percent * 10.0).round() / 10.0),
                format::bytes(u.rss)
            ),
            DIM,
        ));
    }
    if app.paused {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(" PAUSED ", PAUSED));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn footer(f: &mut Frame, app: &App, area: Rect) {
    let line = if app.filtering {
        Line::from(vec![
            Span::styled("filter: ", HEADER),
            Span::raw(app.filter.clone()),
            Span::styled("█", DIM),
            Span::styled("  Enter keep  Esc clear", DIM),
        ])
    } else {
        let view = match app.view {
            View::List => "list",
            View::Detail => "detail",
            View::Topology => "topology",
        };
        let mut spans = vec![Span::styled(format!("[{view}] "), HEADER)];
        if !app.filter.is_empty() {
            spans.push(Span::styled(format!("/{} ", app.filter), HEADER));
        }
        spans.push(Span::styled(
            "q quit  ? help  ↑↓ move  Enter detail  t topology  / filter  s/1-7 sort  p pause  b bits",
            DIM,
        ));
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}

pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The style of an operational state.
pub fn state_style(state: &str) -> Style {
    match state {
        "up" => UP,
        "unknown" => Style::new(),
        _ => DOWN,
    }
}
