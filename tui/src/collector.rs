//! The collector thread: one sample per tick, sent over a channel with
//! rates applied. The UI loop receives samples and input events from the
//! same channel ([`Msg`]), so it sleeps until either arrives.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wirehook_shared::inspect::Snapshot;

use crate::source::{rated, Source};

/// What the UI loop receives.
#[derive(Debug)]
pub enum Msg {
    Sample(Box<Snapshot>),
    Input(ratatui::crossterm::event::Event),
}

/// Commands to the collector.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// Take a sample now.
    Tick,
    Stop,
}

/// Start the collector: a sample at once, then one every `interval`, or
/// whenever a [`Control::Tick`] arrives. It ends on [`Control::Stop`] or
/// when the receiver is gone.
pub fn spawn(
    mut source: Box<dyn Source>,
    interval: Duration,
    tx: Sender<Msg>,
    control: Receiver<Control>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("wiretop-collector".into())
        .spawn(move || {
            let mut prev = None;
            let mut next = Instant::now();
            loop {
                let s = rated(source.as_mut(), &mut prev);
                if tx.send(Msg::Sample(Box::new(s))).is_err() {
                    return;
                }
                next += interval;
                let now = Instant::now();
                if next < now {
                    next = now + interval;
                }
                match control.recv_timeout(next - now) {
                    Ok(Control::Tick) | Err(RecvTimeoutError::Timeout) => {}
                    Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .expect("spawn collector thread")
}
