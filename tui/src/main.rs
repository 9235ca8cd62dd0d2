//! wiretop: a live terminal view of every network namespace. See the
//! README's "wiretop" section.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;

use wirehook_shared::inspect::SelfMonitor;
use wiretop::app::SelfUsage;
use wiretop::collector::{self, Control, Msg};
use wiretop::source::{rated, DemoSource, OsSource, Source};
use wiretop::{ui, App};

#[derive(Parser, Debug)]
#[command(
    name = "wiretop",
    version,
    about = "Live view of every network namespace: containers, links, veth peers, bridges, traffic"
)]
struct Args {
    /// Print one snapshot and exit (JSON; implies --json).
    #[arg(long)]
    once: bool,
    /// Print JSON instead of drawing: one object per line, every --interval.
    #[arg(long)]
    json: bool,
    /// Seconds between samples.
    #[arg(long, short = 'i', default_value_t = 1.0)]
    interval: f64,
    /// Show made-up data instead of the host's (no root needed).
    #[arg(long)]
    demo: bool,
    /// wirehook's root (as `wirehook --root`; default WIREHOOK_ROOT, else /): records under DIR/run/wirehook.
    #[arg(long)]
    root: Option<PathBuf>,
    /// With --json: stop after this many samples.
    #[arg(long)]
    count: Option<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !(args.interval > 0.0 && args.interval <= 3600.0) {
        bail!("--interval must be between 0 and 3600 seconds, e.g. --interval 0.5");
    }
    let interval = Duration::from_secs_f64(args.interval);
    let mut source: Box<dyn Source> = if args.demo {
        Box::new(DemoSource::new(args.interval))
    } else {
        Box::new(OsSource::new(args.root.clone()))
    };
    if args.once {
        let snap = rated(source.as_mut(), &mut None);
        println!("{}", serde_json::to_string_pretty(&snap)?);
        return Ok(());
    }
    if args.json {
        let mut prev = None;
        let mut out = std::io::stdout().lock();
        let mut n = 0u64;
        let mut next = std::time::Instant::now();
        loop {
            let snap = rated(source.as_mut(), &mut prev);
            if writeln!(out, "{}", serde_json::to_string(&snap)?).is_err() || out.flush().is_err() {
                return Ok(()); // reader went away
            }
            n += 1;
            if args.count.is_some_and(|c| n >= c) {
                return Ok(());
            }
            next += interval;
            let now = std::time::Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }
    interactive(source, args.interval)
}

fn restore() {
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
}

fn interactive(source: Box<dyn Source>, interval: f64) -> Result<()> {
    // ratatui::init installs a panic hook that leaves raw mode and the
    // alternate screen; ours turns mouse capture off first.
    let mut terminal = ratatui::init();
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(std::io::stdout(), DisableMouseCapture);
        prev_hook(info);
    }));
    let _ = execute!(std::io::stdout(), EnableMouseCapture);
    let result = run(&mut terminal, source, interval);
    restore();
    result
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    source: Box<dyn Source>,
    interval: f64,
) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let collector = collector::spawn(
        source,
        Duration::from_secs_f64(interval),
        tx.clone(),
        ctl_rx,
    );
    std::thread::Builder::new()
        .name("wiretop-input".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                if tx.send(Msg::Input(ev)).is_err() {
                    return;
                }
            }
        })?;
    let mut app = App::new(interval);
    let mut monitor = SelfMonitor::new();
    loop {
        terminal.draw(|f| ui::draw(f, &mut app))?;
        let Ok(msg) = rx.recv() else { break };
        if matches!(msg, Msg::Sample(_)) {
            if let Some((Some(cpu), rss)) = monitor.sample() {
                app.usage = Some(SelfUsage {
                    cpu_percent: cpu,
                    rss,
                });
            }
        }
        let mut quit = handle(&mut app, msg);
        // Apply whatever else is queued before drawing again.
        while let (false, Ok(m)) = (quit, rx.try_recv()) {
            quit = handle(&mut app, m);
        }
        if quit {
            break;
        }
    }
    let _ = ctl_tx.send(Control::Stop);
    drop(collector); // it ends on its next tick; do not wait for a slow read
    Ok(())
}

fn handle(app: &mut App, msg: Msg) -> bool {
    match msg {
        Msg::Sample(s) => {
            app.apply(*s);
            false
        }
        Msg::Input(Event::Key(k)) => app.on_key(k),
        Msg::Input(Event::Mouse(m)) => {
            app.on_mouse(m);
            false
        }
        Msg::Input(_) => false, // resize: the next draw fits the new size
    }
}
