//! The help overlay (`?`).

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::HEADER;

const KEYS: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move the selection / scroll"),
    ("PgUp PgDn", "a page up / down"),
    ("Home End  g G", "first / last"),
    ("Enter  d", "detail of the selected namespace"),
    ("t", "topology: bridges, ports, peers"),
    ("l  Esc", "back to the list"),
    ("Tab", "next view"),
    ("/", "filter (name, mode, link, address, process)"),
    ("s  ← →  1-7", "sort by column (again: reverse)"),
    ("r", "reverse the sort"),
    ("p  Space", "pause / resume"),
    ("b", "bytes / bits"),
    ("mouse", "click a row selects it, again opens it"),
    ("", "click a column title sorts; wheel scrolls"),
    ("q  Ctrl-C", "quit"),
];

pub fn draw(f: &mut Frame, area: Rect) {
    let h = (KEYS.len() as u16 + 4).min(area.height);
    let w = 62.min(area.width);
    let [v] = Layout::vertical([Constraint::Length(h)])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w)])
        .flex(Flex::Center)
        .areas(v);
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, d)| Line::from(format!(" {k:<15} {d}")))
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(" any key closes this").style(HEADER));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" wiretop help ")
                .title_style(HEADER),
        ),
        r,
    );
}
