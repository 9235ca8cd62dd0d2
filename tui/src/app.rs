//! The application state and its input handling. Nothing here touches the
//! terminal or the host: samples come in through [`App::apply`], keys and
//! mouse events through [`App::on_key`] / [`App::on_mouse`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

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
    /// Where each column's header was drawn last: (column, first x, last
    /// x + 1), for sorting by a click on a header.
    pub header_cols: Vec<(Column, u16, u16)>,
    /// Rows the list showed last (page up/down).
    pub page: usize,
    pub samples: u64,
    /// wiretop's own CPU and memory, shown in the header (none in tests).
    pub usage: Option<SelfUsage>,
    /// The list's order, computed once per sample, filter or sort change
    /// (a frame asks for it several times; sorting 1000 namespaces by
    /// name each time was most of the view's CPU).
    order: RefCell<Option<Order>>,
}

/// wiretop's own resource use (see `wirehook_shared::inspect::procs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelfUsage {
    /// Percent of one core since the previous reading.
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    pub rss: u64,
}

/// The cached row order and what it was computed from.
struct Order {
    samples: u64,
    filter: String,
    sort: Column,
    desc: bool,
    /// Indexes into `snap.namespaces`, filtered and sorted.
    rows: Vec<usize>,
    /// Widest display name among the rows (characters).
    name_width: usize,
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
            header_cols: Vec::new(),
            page: 10,
            samples: 0,
            usage: None,
            order: RefCell::new(None),
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
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(v);
        }
        if self.history.len() > snap.namespaces.len() {
            let live: HashSet<u64> = snap.namespaces.iter().map(|n| n.inode).collect();
            self.history.retain(|ino, _| live.contains(ino));
        }
        self.snap = snap;
        self.fix_selection();
    }

    fn matches(&self, ns: &Namespace, f: &str) -> bool {
        if f.is_empty() {
            return true;
        }
        let hit = |s: &str| s.to_lowercase().contains(f);
        hit(&ns.display_name())
            || hit(ns.mode())
            || ns.inode.to_string().contains(f)
            || ns.names.iter().any(|n| hit(&n.name))
            || ns
                .container
                .as_ref()
                .is_some_and(|c| hit(&c.id) || c.networks.iter().any(|n| hit(n)))
            || ns.links.iter().any(|l| hit(&l.name))
            || ns.addresses.iter().any(|a| hit(&a.address))
            || ns
                .processes
                .iter()
                .any(|p| hit(&p.comm) || p.cmd.as_deref().is_some_and(hit))
    }

    /// Filter and sort the namespaces (indexes into `snap.namespaces`).
    fn compute_order(&self) -> Order {
        let f = self.filter.to_lowercase();
        // Sort keys once per namespace, not once per comparison.
        enum Key {
            Text(String),
            Num(f64),
        }
        let mut keyed: Vec<(Key, &Namespace, usize)> = self
            .snap
            .namespaces
            .iter()
            .enumerate()
            .filter(|(_, n)| self.matches(n, &f))
            .map(|(i, n)| {
                let k = match self.sort {
                    Column::Name => Key::Text(n.display_name().to_lowercase()),
                    Column::Mode => Key::Text(n.mode().to_string()),
                    Column::Network => Key::Text(network(n)),
                    Column::Links => Key::Num(n.links.len() as f64),
                    Column::Addresses => Key::Num(n.addresses.len() as f64),
                    Column::Rx => Key::Num(n.totals.rate.map(|r| r.rx_bytes).unwrap_or(0.0)),
                    Column::Tx => Key::Num(n.totals.rate.map(|r| r.tx_bytes).unwrap_or(0.0)),
                };
                (k, n, i)
            })
            .collect();
        let name_sort = self.sort == Column::Name;
        keyed.sort_by(|(ka, a, _), (kb, b, _)| {
            let o = match (ka, kb) {
                (Key::Text(x), Key::Text(y)) => x.cmp(y),
                (Key::Num(x), Key::Num(y)) => x.total_cmp(y),
                _ => std::cmp::Ordering::Equal,
            };
            // By name, the host first (last when reversed).
            let o = if name_sort {
                b.host.cmp(&a.host).then(o)
            } else {
                o
            };
            let o = if self.sort_desc { o.reverse() } else { o };
            // The host first among equals, then by inode: a stable order.
            o.then(b.host.cmp(&a.host)).then(a.inode.cmp(&b.inode))
        });
        let name_width = keyed
            .iter()
            .map(|(_, n, _)| n.display_name().chars().count())
            .max()
            .unwrap_or(0);
        Order {
            samples: self.samples,
            filter: self.filter.clone(),
            sort: self.sort,
            desc: self.sort_desc,
            rows: keyed.into_iter().map(|(_, _, i)| i).collect(),
            name_width,
        }
    }

    /// The cached order, recomputed when the sample, filter or sort
    /// changed since.
    fn order(&self) -> std::cell::Ref<'_, Order> {
        {
            let mut c = self.order.borrow_mut();
            let fresh = c.as_ref().is_some_and(|o| {
                o.samples == self.samples
                    && o.sort == self.sort
                    && o.desc == self.sort_desc
                    && o.filter == self.filter
                    && o.rows.iter().all(|&i| i < self.snap.namespaces.len())
            });
            if !fresh {
                *c = Some(self.compute_order());
            }
        }
        std::cell::Ref::map(self.order.borrow(), |o| o.as_ref().expect("computed"))
    }

    /// The namespaces the list shows, filtered and sorted.
    pub fn rows(&self) -> Vec<&Namespace> {
        self.order()
            .rows
            .iter()
            .map(|&i| &self.snap.namespaces[i])
            .collect()
    }

    /// How many rows the list shows.
    pub fn row_count(&self) -> usize {
        self.order().rows.len()
    }

    /// The widest name among the rows, in characters.
    pub fn name_width(&self) -> usize {
        self.order().name_width
    }

    pub fn selected_index(&self) -> Option<usize> {
        let s = self.selected?;
        let ns = &self.snap.namespaces;
        self.order().rows.iter().position(|&i| ns[i].inode == s)
    }

    pub fn selected_ns(&self) -> Option<&Namespace> {
        self.selected.and_then(|s| self.snap.namespace(s))
    }

    fn fix_selection(&mut self) {
        if self.selected_index().is_none() {
            self.select(0);
        }
    }

    fn select(&mut self, i: usize) {
        let pick = {
            let o = self.order();
            o.rows
                .get(i.min(o.rows.len().saturating_sub(1)))
                .map(|&j| self.snap.namespaces[j].inode)
        };
        if pick.is_some() {
            self.selected = pick;
        }
    }

    /// Sort by `col`; the column already sorted by reverses instead.
    /// Numbers sort largest first, text A to Z.
    pub fn sort_by(&mut self, col: Column) {
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
            KeyCode::Char(c @ '1'..='7') => self.sort_by(Column::ALL[(c as u8 - b'1') as usize]),
            _ => {}
        }
        false
    }

    /// Mouse: wheel scrolls, a click on a list row selects it, a click on
    /// the selected row opens its detail, a click on a column's title sorts
    /// by it (again: reverses).
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
                    // The header: a click on a column's title sorts by it.
                    let hit = self
                        .header_cols
                        .iter()
                        .find(|(_, x0, x1)| (*x0..*x1).contains(&m.column))
                        .map(|(c, _, _)| *c);
                    if let Some(c) = hit {
                        self.sort_by(c);
                    }
                    return;
                }
                let i = self.offset + (m.row - a.y - 1) as usize;
                let hit = self
                    .order()
                    .rows
                    .get(i)
                    .map(|&j| self.snap.namespaces[j].inode);
                if let Some(ino) = hit {
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
