//! The application state and its input handling. Nothing here touches the
//! terminal or the host: samples come in through [`App::apply`], keys and
//! mouse events through [`App::on_key`] / [`App::on_mouse`].

use std::collections::{HashMap, VecDeque};

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;
use wirehook_shared::inspect::{Namespace, Snapshot};

/// Samples of history kept per namespace and link (for sparklines).
pub const HISTORY: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    List,
    Detail,
    Topology,
}

/// Columns of the namespace list, in order; every one sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    Mode,
    Network,
    Links,
    Addresses,
    Rx,
    Tx,
}

impl Column {
    pub const ALL: [Column; 7] = [
        Column::Name,
        Column::Mode,
        Column::Network,
        Column::Links,
        Column::Addresses,
        Column::Rx,
        Column::Tx,
    ];

    pub fn title(&self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::Mode => "MODE",
            Column::Network => "NETWORK",
            Column::Links => "LINKS",
            Column::Addresses => "ADDRESSES",
            Column::Rx => "RX",
            Column::Tx => "TX",
        }
    }
}

pub struct App {
    pub snap: Snapshot,
    pub view: View,
    /// Inode of the selected namespace (kept across updates and re-sorts).
    pub selected: Option<u64>,
    /// First visible row of the list (scrolling).
    pub offset: usize,
    pub sort: Column,
    pub sort_desc: bool,
    pub filter: String,
    /// Typing a filter (after `/`).
    pub filtering: bool,
    pub paused: bool,
    pub bits: bool,
    pub help: bool,
    /// Scroll of the detail and topology views.
    pub scroll: u16,
    pub interval: f64,
    /// Rx+tx bytes per second of each namespace, oldest first.
    pub history: HashMap<u64, VecDeque<u64>>,
    /// Where the list's rows were drawn last (for mouse selection).
    pub list_area: Rect,
    /// Rows the list showed last (page up/down).
    pub page: usize,
    pub samples: u64,
}

impl App {
    pub fn new(interval: f64) -> App {
        App {
            snap: Snapshot::default(),
            view: View::List,
            selected: None,
            offset: 0,
            sort: Column::Name,
            sort_desc: false,
            filter: String::new(),
            filtering: false,
            paused: false,
            bits: false,
            help: false,
            scroll: 0,
            interval,
            history: HashMap::new(),
            list_area: Rect::default(),
            page: 10,
            samples: 0,
        }
    }

    /// Take a sample (ignored while paused: the screen stays as it was).
    pub fn apply(&mut self, snap: Snapshot) {
        if self.paused {
            return;
        }
        self.samples += 1;
        for ns in &snap.namespaces {
            let h = self.history.entry(ns.inode).or_default();
            let v = ns.totals.rate.map(|r| r.total_bytes() as u64).unwrap_or(0);
            h.push_back(v);
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        self.history
            .retain(|ino, _| snap.namespaces.iter().any(|n| n.inode == *ino));
        self.snap = snap;
        self.fix_selection();
    }

    fn matches(&self, ns: &Namespace) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let f = self.filter.to_lowercase();
        let hit = |s: &str| s.to_lowercase().contains(&f);
        hit(&ns.display_name())
            || hit(ns.mode())
            || ns.inode.to_string().contains(&f)
            || ns.names.iter().any(|n| hit(&n.name))
            || ns
                .container
                .as_ref()
                .is_some_and(|c| hit(&c.id) || c.networks.iter().any(|n| hit(n)))
            || ns.links.iter().any(|l| hit(&l.name))
            || ns.addresses.iter().any(|a| hit(&a.address))
            || ns.processes.iter().any(|p| hit(&p.comm))
    }

    /// The namespaces the list shows, filtered and sorted.
    pub fn rows(&self) -> Vec<&Namespace> {
        let mut v: Vec<&Namespace> = self
            .snap
            .namespaces
            .iter()
            .filter(|n| self.matches(n))
            .collect();
        let rx = |n: &Namespace| n.totals.rate.map(|r| r.rx_bytes).unwrap_or(0.0);
        let tx = |n: &Namespace| n.totals.rate.map(|r| r.tx_bytes).unwrap_or(0.0);
        v.sort_by(|a, b| {
            let o = match self.sort {
                Column::Name => b.host.cmp(&a.host).then_with(|| {
                    a.display_name()
                        .to_lowercase()
                        .cmp(&b.display_name().to_lowercase())
                }),
                Column::Mode => a.mode().cmp(b.mode()),
                Column::Network => network(a).cmp(&network(b)),
                Column::Links => a.links.len().cmp(&b.links.len()),
                Column::Addresses => a.addresses.len().cmp(&b.addresses.len()),
                Column::Rx => rx(a).total_cmp(&rx(b)),
                Column::Tx => tx(a).total_cmp(&tx(b)),
            };
            let o = if self.sort_desc { o.reverse() } else { o };
            // The host first among equals, then by inode: a stable order.
            o.then(b.host.cmp(&a.host)).then(a.inode.cmp(&b.inode))
        });
        v
    }

    pub fn selected_index(&self) -> Option<usize> {
        let rows = self.rows();
        self.selected
            .and_then(|s| rows.iter().position(|n| n.inode == s))
    }

    pub fn selected_ns(&self) -> Option<&Namespace> {
        self.selected.and_then(|s| self.snap.namespace(s))
    }

    fn fix_selection(&mut self) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        if self.selected_index().is_none() {
            self.selected = Some(rows[0].inode);
        }
    }

    fn select(&mut self, i: usize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let i = i.min(rows.len() - 1);
        self.selected = Some(rows[i].inode);
    }

    fn move_by(&mut self, d: isize) {
        match self.view {
            View::List => {
                let cur = self.selected_index().unwrap_or(0) as isize;
                self.select((cur + d).max(0) as usize);
            }
            View::Detail | View::Topology => {
                self.scroll = (self.scroll as isize + d).clamp(0, u16::MAX as isize) as u16;
            }
        }
    }

    /// Handle a key; returns true when the program should quit.
    pub fn on_key(&mut self, k: KeyEvent) -> bool {
        if k.kind == KeyEventKind::Release {
            return false;
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return true;
        }
        if self.filtering {
            match k.code {
                KeyCode::Enter => self.filtering = false,
                KeyCode::Esc => {
                    self.filtering = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.offset = 0;
            self.fix_selection();
            return false;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return k.code == KeyCode::Char('q');
        }
        match k.code {
            KeyCode::Char('q') => return true,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-(self.page.max(1) as isize)),
            KeyCode::PageDown => self.move_by(self.page.max(1) as isize),
            KeyCode::Home | KeyCode::Char('g') => match self.view {
                View::List => self.select(0),
                _ => self.scroll = 0,
            },
            KeyCode::End | KeyCode::Char('G') if self.view == View::List => self.select(usize::MAX),
            KeyCode::Enter if self.view == View::List && self.selected.is_some() => {
                self.view = View::Detail;
                self.scroll = 0;
            }
            KeyCode::Esc | KeyCode::Backspace => {
                if self.view != View::List {
                    self.view = View::List;
                } else {
                    self.filter.clear();
                }
            }
            KeyCode::Char('d') => {
                self.view = View::Detail;
                self.scroll = 0;
            }
            KeyCode::Char('t') => {
                self.view = View::Topology;
                self.scroll = 0;
            }
            KeyCode::Char('l') => self.view = View::List,
            KeyCode::Tab => {
                self.view = match self.view {
                    View::List => View::Detail,
                    View::Detail => View::Topology,
                    View::Topology => View::List,
                };
                self.scroll = 0;
            }
            KeyCode::Char('/') => {
                self.view = View::List;
                self.filtering = true;
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('b') => self.bits = !self.bits,
            KeyCode::Char('s') | KeyCode::Right => {
                let i = Column::ALL
                    .iter()
                    .position(|c| *c == self.sort)
                    .unwrap_or(0);
                self.sort = Column::ALL[(i + 1) % Column::ALL.len()];
            }
            KeyCode::Left => {
                let i = Column::ALL
                    .iter()
                    .position(|c| *c == self.sort)
                    .unwrap_or(0);
                self.sort = Column::ALL[(i + Column::ALL.len() - 1) % Column::ALL.len()];
            }
            KeyCode::Char('r') => self.sort_desc = !self.sort_desc,
            KeyCode::Char(c @ '1'..='7') => {
                let col = Column::ALL[(c as u8 - b'1') as usize];
                if self.sort == col {
                    self.sort_desc = !self.sort_desc;
                } else {
                    self.sort = col;
                    self.sort_desc = matches!(
                        col,
                        Column::Rx | Column::Tx | Column::Links | Column::Addresses
                    );
                }
            }
            _ => {}
        }
        false
    }

    /// Mouse: wheel scrolls, a click on a list row selects it, a click on
    /// the selected row opens its detail, a click on a header sorts.
    pub fn on_mouse(&mut self, m: MouseEvent) {
        match m.kind {
            MouseEventKind::ScrollDown => self.move_by(3),
            MouseEventKind::ScrollUp => self.move_by(-3),
            MouseEventKind::Down(MouseButton::Left) if self.view == View::List => {
                let a = self.list_area;
                if m.column < a.x
                    || m.column >= a.x + a.width
                    || m.row < a.y
                    || m.row >= a.y + a.height
                {
                    return;
                }
                if m.row == a.y {
                    return; // header: sorting by click is not offered (keys 1-7)
                }
                let i = self.offset + (m.row - a.y - 1) as usize;
                let rows = self.rows();
                if let Some(ns) = rows.get(i) {
                    let ino = ns.inode;
                    if self.selected == Some(ino) {
                        self.view = View::Detail;
                        self.scroll = 0;
                    } else {
                        self.selected = Some(ino);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The networks column of a namespace.
pub fn network(ns: &Namespace) -> String {
    ns.container
        .as_ref()
        .map(|c| c.networks.join(","))
        .unwrap_or_default()
}
