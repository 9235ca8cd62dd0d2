//! The namespace list: one row per namespace.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

use super::{DIM, ERROR, HEADER, RX, SELECTED, TX};
use crate::app::{network, App, Column};
use crate::format;

pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    app.header_cols = render(f, app, area);
}

fn render(f: &mut Frame, app: &mut App, area: Rect) -> Vec<(Column, u16, u16)> {
    app.list_area = area;
    let visible = area.height.saturating_sub(1) as usize;
    app.page = visible.max(1);
    let sel = app.selected_index();
    if let Some(s) = sel {
        if s < app.offset {
            app.offset = s;
        } else if visible > 0 && s >= app.offset + visible {
            app.offset = s + 1 - visible;
        }
    }
    let n_rows = app.row_count();
    if app.offset > n_rows.saturating_sub(visible) {
        app.offset = n_rows.saturating_sub(visible);
    }
    let app = &*app;
    let rows = app.rows();
    let wide = area.width >= 100;
    let spark_w = if area.width >= 120 { 16 } else { 8 };
    let header = Row::new(
        Column::ALL
            .iter()
            .map(|c| {
                let mut t = c.title().to_string();
                if *c == app.sort {
                    t.push(if app.sort_desc { '▼' } else { '▲' });
                }
                Cell::from(t)
            })
            .chain(wide.then(|| Cell::from("TRAFFIC"))),
    )
    .style(HEADER);
    let body: Vec<Row> = rows
        .iter()
        .skip(app.offset)
        .take(visible)
        .map(|ns| {
            let rate = ns.totals.rate.unwrap_or_default();
            let addrs: Vec<&str> = ns
                .addresses
                .iter()
                .filter(|a| {
                    !a.address.starts_with("127.")
                        && a.address != "::1/128"
                        && !a.address.starts_with("fe80")
                })
                .map(|a| a.address.as_str())
                .collect();
            let mut cells = vec![
                Cell::from(ns.display_name()),
                Cell::from(ns.mode().to_string()),
                Cell::from(network(ns)),
            ];
            if let Some(e) = &ns.error {
                cells.push(Cell::from("-"));
                cells.push(Cell::from(Line::from(Span::styled(e.clone(), ERROR))));
            } else {
                cells.push(Cell::from(ns.links.len().to_string()));
                cells.push(Cell::from(addrs.join(" ")));
                cells.push(Cell::from(Span::styled(
                    format::rate(rate.rx_bytes, app.bits),
                    RX,
                )));
                cells.push(Cell::from(Span::styled(
                    format::rate(rate.tx_bytes, app.bits),
                    TX,
                )));
                if wide {
                    let h = app.history.get(&ns.inode);
                    let s = h
                        .map(|h| format::sparkline(h.iter().copied(), spark_w))
                        .unwrap_or_default();
                    cells.push(Cell::from(Span::styled(s, DIM)));
                }
            }
            let mut row = Row::new(cells);
            if Some(ns.inode) == app.selected {
                row = row.style(SELECTED);
            }
            row
        })
        .collect();
    let name_w = app.name_width().clamp(4, 24) as u16;
    let mut widths = vec![
        Constraint::Length(name_w),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Min(14),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    if wide {
        widths.push(Constraint::Length(spark_w as u16));
    }
    // Where the columns land, for sorting by a click on a title: the
    // layout the table itself makes (no selection column: the table is
    // drawn without state).
    let cells = Layout::horizontal(widths.clone()).spacing(1).split(area);
    let header_cols = Column::ALL
        .iter()
        .zip(cells.iter())
        .map(|(c, r)| (*c, r.x, r.x + r.width))
        .collect();
    let table = Table::new(body, widths).header(header).column_spacing(1);
    f.render_widget(table, area);
    header_cols
}
