//! Whole-screen snapshots of every view at several terminal sizes, drawn
//! from the demo's fixed data with time driven by injected ticks (no
//! sleeps), plus style assertions for what only colour shows.
//!
//! Snapshots live in `tests/snapshots/`; a missing or changed one fails
//! (insta never writes over them in CI; locally it leaves `.snap.new`
//! files to review with `cargo insta review`).

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::style::Color;
use ratatui::Terminal;
use wiretop::app::{Column, View};
use wiretop::source::{rated, DemoSource, FixedSource, Source};
use wiretop::{ui, App};

/// An app fed `ticks` demo samples, one second apart.
fn app_after(ticks: u64) -> App {
    let mut src = DemoSource::new(1.0);
    let mut prev = None;
    let mut app = App::new(1.0);
    for _ in 0..ticks {
        app.apply(rated(&mut src, &mut prev));
    }
    app
}

fn key(app: &mut App, c: KeyCode) -> bool {
    app.on_key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app)).unwrap();
    t
}

fn screen(app: &mut App, w: u16, h: u16) -> String {
    render(app, w, h).backend().to_string()
}

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 36), (60, 16)];

#[test]
fn list_at_sizes() {
    for (w, h) in SIZES {
        let mut app = app_after(12);
        insta::assert_snapshot!(format!("list_{w}x{h}"), screen(&mut app, w, h));
    }
}

#[test]
fn detail_at_sizes() {
    for (w, h) in SIZES {
        let mut app = app_after(12);
        key(&mut app, KeyCode::Char('/'));
        typed(&mut app, "web-1");
        key(&mut app, KeyCode::Enter); // keep filter
        key(&mut app, KeyCode::Enter); // open detail
        assert_eq!(app.view, View::Detail);
        insta::assert_snapshot!(format!("detail_{w}x{h}"), screen(&mut app, w, h));
    }
}

#[test]
fn topology_at_sizes() {
    for (w, h) in SIZES {
        let mut app = app_after(12);
        key(&mut app, KeyCode::Char('t'));
        insta::assert_snapshot!(format!("topology_{w}x{h}"), screen(&mut app, w, h));
    }
}

#[test]
fn help_overlay() {
    let mut app = app_after(3);
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!("help_80x24", screen(&mut app, 80, 24));
    // Any key closes it, without acting.
    assert!(!key(&mut app, KeyCode::Char('t')));
    assert!(!app.help);
    assert_eq!(app.view, View::List);
}

#[test]
fn filter_sort_bits_pause() {
    let mut app = app_after(12);
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "10.20");
    insta::assert_snapshot!("filter_typing", screen(&mut app, 100, 12));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.rows().len(), 3, "host (wh-web), db, cache");
    key(&mut app, KeyCode::Esc); // clears the filter
    assert!(app.filter.is_empty());
    key(&mut app, KeyCode::Char('6')); // sort by RX, descending
    key(&mut app, KeyCode::Char('b')); // bits
    key(&mut app, KeyCode::Char('p')); // pause
    let frozen = app.snap.taken_at;
    app.apply(wiretop::source::demo_snapshot(99, 1.0));
    assert_eq!(app.snap.taken_at, frozen, "paused: samples are not applied");
    insta::assert_snapshot!("sorted_rx_bits_paused", screen(&mut app, 100, 16));
    key(&mut app, KeyCode::Char('p'));
    app.apply(wiretop::source::demo_snapshot(99, 1.0));
    assert_ne!(app.snap.taken_at, frozen);
}

#[test]
fn navigation_and_quit() {
    let mut app = app_after(2);
    let first = app.selected;
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_ne!(app.selected, first);
    key(&mut app, KeyCode::Home);
    assert_eq!(app.selected, first);
    key(&mut app, KeyCode::End);
    assert_eq!(app.selected_index(), Some(app.rows().len() - 1));
    assert!(key(&mut app, KeyCode::Char('q')));
    assert!(app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
}

#[test]
fn mouse_selects_opens_and_scrolls() {
    let mut app = app_after(2);
    render(&mut app, 100, 20); // lays out the list (header at row 1)
    let click = |row| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 3,
        row,
        modifiers: KeyModifiers::NONE,
    };
    app.on_mouse(click(4)); // third data row
    assert_eq!(app.selected_index(), Some(2));
    app.on_mouse(click(4)); // again: detail
    assert_eq!(app.view, View::Detail);
    key(&mut app, KeyCode::Esc);
    app.on_mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 3,
        row: 4,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(app.selected_index(), Some(5));
}

#[test]
fn namespaces_come_and_go() {
    let full = wiretop::source::demo_snapshot(1, 1.0);
    let mut fewer = wiretop::source::demo_snapshot(2, 1.0);
    let gone = fewer.namespaces.remove(2).inode;
    let mut src = FixedSource::new(vec![
        full.clone(),
        fewer,
        wiretop::source::demo_snapshot(3, 1.0),
    ]);
    let mut prev = None;
    let mut app = App::new(1.0);
    app.apply(rated(&mut src, &mut prev));
    app.selected = Some(gone);
    app.view = View::Detail;
    app.apply(rated(&mut src, &mut prev));
    // The selected namespace vanished: the screen still draws.
    let s = screen(&mut app, 80, 24);
    assert!(s.contains("no namespace selected") || app.selected != Some(gone));
    app.apply(rated(&mut src, &mut prev));
    assert_eq!(app.snap.namespaces.len(), full.namespaces.len());
    let _ = src.sample();
}

fn find(t: &Terminal<TestBackend>, text: &str) -> (u16, u16) {
    let buf = t.backend().buffer();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        if let Some(pos) = line.find(text) {
            let x = line[..pos].chars().count() as u16;
            return (x, y);
        }
    }
    panic!("{text:?} not on screen:\n{}", t.backend());
}

#[test]
fn colours_carry_meaning() {
    let mut app = app_after(4);
    let t = render(&mut app, 120, 36);
    // A namespace that cannot be read is red.
    let (x, y) = find(&t, "may not enter");
    assert_eq!(t.backend().buffer()[(x, y)].fg, Color::Red);
    // The selected row is reversed.
    let (x, y) = find(&t, "host");
    assert!(
        t.backend().buffer()[(x, y + 1)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
            || t.backend().buffer()[(x, y)]
                .modifier
                .contains(ratatui::style::Modifier::REVERSED)
    );

    // Detail: link states coloured (up green, lowerlayerdown red), drops red.
    app.filter = "blue".into();
    app.selected = None;
    app.apply(wiretop::source::demo_snapshot(5, 1.0));
    key(&mut app, KeyCode::Enter);
    let t = render(&mut app, 120, 36);
    let (x, y) = find(&t, "lowerla");
    assert_eq!(t.backend().buffer()[(x, y)].fg, Color::Red);

    app.view = View::List;
    app.filter = "db".into();
    app.selected = None;
    app.apply(wiretop::source::demo_snapshot(6, 1.0));
    key(&mut app, KeyCode::Enter);
    let t = render(&mut app, 120, 36);
    let (x, y) = find(&t, "up ");
    assert_eq!(t.backend().buffer()[(x, y)].fg, Color::Green);
    let (x, y) = find(&t, "0/3");
    assert_eq!(
        t.backend().buffer()[(x, y)].fg,
        Color::Red,
        "drops show red"
    );

    // Paused is yellow.
    app.view = View::List;
    key(&mut app, KeyCode::Char('p'));
    let t = render(&mut app, 120, 36);
    let (x, y) = find(&t, "PAUSED");
    assert_eq!(t.backend().buffer()[(x, y)].bg, Color::Yellow);
}

/// The header row's text and where the list's header is.
fn header_row(app: &App, t: &Terminal<TestBackend>) -> (String, u16) {
    let y = app.list_area.y;
    let buf = t.backend().buffer();
    let line: String = (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol().to_string())
        .collect();
    (line, y)
}

fn click(app: &mut App, column: u16, row: u16) {
    app.on_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    });
}

#[test]
fn mouse_click_on_a_header_sorts() {
    for (w, h) in [(120, 36), (80, 24)] {
        let mut app = app_after(4);
        // Every title, wherever the table put it, sorts by its column.
        for col in Column::ALL {
            let t = render(&mut app, w, h);
            let (line, y) = header_row(&app, &t);
            let at = line
                .split(' ')
                .scan(0usize, |x, word| {
                    let here = *x;
                    *x += word.chars().count() + 1;
                    Some((here, word))
                })
                .find(|(_, word)| word.trim_end_matches(['▲', '▼']) == col.title())
                .map(|(x, _)| x as u16)
                .unwrap_or_else(|| panic!("{} not in the header at {w}x{h}: {line}", col.title()));
            // Its last letter, not only the first.
            click(&mut app, at + col.title().chars().count() as u16 - 1, y);
            assert_eq!(app.sort, col, "click on {} at {w}x{h}", col.title());
        }
    }

    let mut app = app_after(4);
    let t = render(&mut app, 120, 36);
    let (x, y) = find(&t, "RX");
    assert_eq!(y, app.list_area.y, "RX is the header's");
    click(&mut app, x, y);
    assert_eq!(
        (app.sort, app.sort_desc),
        (Column::Rx, true),
        "numbers: largest first"
    );
    let rx = |app: &App| -> Vec<f64> {
        app.rows()
            .iter()
            .map(|n| n.totals.rate.map(|r| r.rx_bytes).unwrap_or(0.0))
            .collect()
    };
    let v = rx(&app);
    assert!(v.windows(2).all(|p| p[0] >= p[1]), "descending: {v:?}");
    insta::assert_snapshot!("sorted_by_click_rx", screen(&mut app, 120, 16));
    // The same title again reverses.
    click(&mut app, x, y);
    assert_eq!((app.sort, app.sort_desc), (Column::Rx, false));
    let v = rx(&app);
    assert!(v.windows(2).all(|p| p[0] <= p[1]), "ascending: {v:?}");
    // Off the titles (the sparkline's column, the row of the top line):
    // no change; a click on a row still selects.
    let (tx_, ty) = find(&t, "TRAFFIC");
    click(&mut app, tx_ + 2, ty);
    click(&mut app, 2, 0);
    assert_eq!((app.sort, app.sort_desc), (Column::Rx, false));
    let before = app.selected;
    click(&mut app, 2, y + 3);
    assert_ne!(app.selected, before);
    assert_eq!(app.view, View::List);
    // NAME: A to Z with the host first.
    let (x, y) = find(&t, "NAME");
    click(&mut app, x, y);
    assert_eq!((app.sort, app.sort_desc), (Column::Name, false));
    assert!(app.rows()[0].host);
}
