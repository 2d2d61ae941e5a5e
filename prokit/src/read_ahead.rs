//! Reading packages ahead of the install, on a thread of its own (docs/crash-safety.md §5.1,
//! "Reading ahead").
//!
//! Owns: the hand-off between the downloads and the install. Packages arrive from the
//! download workers in any order; the reader takes them in plan order, reads each whole —
//! every byte hashed, every bound of `feeds::package` checked, the data tar decompressed into
//! memory — and hands it to the install, which then only walks it and writes the root. On two
//! cores that splits an install's work in two: decompressing and hashing on one, creating files
//! on the other.
//!
//! Nothing here decides whether a package is good: the install compares the SHA-256 of the
//! bytes read here with the index's, as it does for a file it reads itself
//! (`install::check_identity`). A package that cannot be read here, or whose data tar is
//! bigger than [`MAX_DATA`], is handed over unread, and the install reads its file itself
//! (and reports what is wrong with it).
//!
//! Memory is bounded: at most [`AHEAD`] packages and [`BUDGET`] bytes of data tars wait for
//! the install (one package more while the install holds none), so a feed of many packages
//! does not pile up in memory when the downloads outrun the install.
//!
//! A package downloaded now (not taken from the cache) arrives with its file open: the
//! download hashed its bytes as it wrote them, so the reader reads them back through that
//! file without hashing them again (`download::download_each_open`). At most [`HELD`] such
//! files wait open; past that a package arrives without one and is read from its path and
//! hashed, as a cached one is.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Condvar, Mutex};

use crate::unpack::Preread;

/// Packages read ahead and not yet taken by the install, at most. Two keep the install fed
/// (a bootstrap of 300 usual packages took the same time as with four), and hold less: a
/// feed's biggest packages read ahead together were the spikes of a bootstrap's peak memory
/// at 10,000 small packages (bench/README.md, "the search's records packed, two packages
/// read ahead").
pub(crate) const AHEAD: usize = 2;
/// Bytes of decompressed data tars waiting for the install, at most (unless it is one).
pub(crate) const BUDGET: usize = 4 << 20;
/// A package whose data tar is bigger is not read ahead.
pub(crate) const MAX_DATA: u64 = 16 << 20;
/// Downloaded files waiting open for the reader, at most.
pub(crate) const HELD: usize = 64;

/// How many downloaded files wait open for the reader ([`HELD`] at most).
#[derive(Default)]
pub(crate) struct Held(AtomicUsize);

impl Held {
    /// Whether one more may wait open (counted when it may).
    pub(crate) fn admit(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < HELD).then_some(n + 1)
            })
            .is_ok()
    }

    /// One taken by the reader.
    fn release(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A package arrived from the downloads: its place in the plan and, when it was downloaded
/// now, its file, open ([`Held`]).
pub(crate) type Arrived = (usize, Option<File>);

/// The bytes read ahead and not yet released by the install, and whether the install has
/// stopped taking them.
#[derive(Default)]
pub(crate) struct Budget {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Budget {
    /// Waits until `n` more bytes fit (always when none are held); false when the install
    /// stopped.
    fn take(&self, n: usize) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !g.1 && g.0 > 0 && g.0 + n > BUDGET {
            g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        if g.1 {
            return false;
        }
        g.0 += n;
        true
    }

    /// The install is done with `n` bytes.
    pub(crate) fn give(&self, n: usize) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(n);
        self.changed.notify_all();
    }

    /// The install takes nothing more: a reader waiting for room stops.
    pub(crate) fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.changed.notify_all();
    }
}

/// A flag set once, waited for.
#[derive(Default)]
pub(crate) struct Latch {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Latch {
    pub(crate) fn open(&self) {
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    pub(crate) fn wait(&self) {
        let mut g = self.set.lock().unwrap_or_else(|p| p.into_inner());
        while !*g {
            g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A package handed to the install: its place in the plan and, when it was read here, the
/// package read whole.
pub(crate) type Ready = (usize, Option<Preread>);

/// The package file at `path` read whole, or `None` (the install reads it itself).
pub(crate) fn read(path: &Path) -> Option<Preread> {
    Preread::read(path, MAX_DATA)
}

/// [`read`] of a file a download wrote and hashed now (`sha256`, checked against the
/// index's), through the file it wrote.
pub(crate) fn read_downloaded(file: File, sha256: [u8; 32]) -> Option<Preread> {
    Preread::read_downloaded(file, sha256, MAX_DATA)
}

/// The reader's loop: `count` packages, arriving as numbers on `arrived` in any order, handed
/// to `ready` in order, each read by `read_one` (by number). Stops when every package was
/// handed over, when `arrived` closes before the next one arrived (a download failed), or
/// when the install stops taking them.
pub(crate) fn run(
    count: usize,
    arrived: Receiver<Arrived>,
    ready: SyncSender<Ready>,
    budget: &Budget,
    held: &Held,
    read_one: &dyn Fn(usize, Option<File>) -> Option<Preread>,
) {
    let mut here = vec![false; count];
    let mut files: HashMap<usize, File> = HashMap::new();
    let note = |here: &mut [bool], files: &mut HashMap<usize, File>, (i, file): Arrived| {
        if let Some(flag) = here.get_mut(i) {
            *flag = true;
            if let Some(f) = file {
                files.insert(i, f);
            }
        }
    };
    let mut next = 0;
    while next < count {
        // What arrived meanwhile is noted here (a flag a package) rather than left queued in
        // the channel (a slot a package): downloads outrun the install, and at 10,000
        // packages thousands of arrivals would wait there.
        while let Ok(a) = arrived.try_recv() {
            note(&mut here, &mut files, a);
        }
        if !here[next] {
            match arrived.recv() {
                Ok(a) => note(&mut here, &mut files, a),
                Err(_) => return,
            }
            continue;
        }
        let file = files.remove(&next);
        if file.is_some() {
            held.release();
        }
        let package = read_one(next, file);
        if !budget.take(package.as_ref().map_or(0, Preread::data_len)) {
            return;
        }
        if ready.send((next, package)).is_err() {
            return;
        }
        next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn packages_arriving_in_any_order_are_handed_over_in_plan_order() {
        let (arrive, arrived) = mpsc::channel();
        let (ready_tx, ready) = mpsc::sync_channel(AHEAD);
        let budget = Budget::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                run(5, arrived, ready_tx, &budget, &Held::default(), &|_, _| {
                    None
                })
            });
            for i in [3, 1, 0, 4, 2] {
                arrive.send((i, None)).unwrap();
            }
            let order: Vec<usize> = ready.iter().map(|(i, _)| i).collect();
            assert_eq!(order, [0, 1, 2, 3, 4]);
        });
    }

    #[test]
    fn a_package_that_never_arrives_stops_the_reader_before_it() {
        let (arrive, arrived) = mpsc::channel();
        let (ready_tx, ready) = mpsc::sync_channel(AHEAD);
        let budget = Budget::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                run(4, arrived, ready_tx, &budget, &Held::default(), &|_, _| {
                    None
                })
            });
            for i in [0, 2, 3] {
                arrive.send((i, None)).unwrap();
            }
            drop(arrive);
            let order: Vec<usize> = ready.iter().map(|(i, _)| i).collect();
            assert_eq!(order, [0]);
        });
    }

    #[test]
    fn the_budget_holds_the_reader_until_the_install_gives_bytes_back() {
        let budget = Budget::default();
        assert!(budget.take(BUDGET - 1));
        std::thread::scope(|s| {
            let waiting = s.spawn(|| budget.take(2));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiting.is_finished(), "over budget: it waits");
            budget.give(BUDGET - 1);
            assert!(waiting.join().unwrap());
        });
        // One package is always let through when none is held, however big.
        let empty = Budget::default();
        assert!(empty.take(BUDGET * 10));
        // A closed budget lets nothing through and wakes a waiting reader.
        std::thread::scope(|s| {
            let waiting = s.spawn(|| empty.take(1));
            std::thread::sleep(std::time::Duration::from_millis(20));
            empty.close();
            assert!(!waiting.join().unwrap());
        });
    }

    #[test]
    fn downloaded_files_wait_open_up_to_the_bound_and_each_reaches_its_own_read() {
        let held = Held::default();
        assert!((0..HELD).all(|_| held.admit()));
        assert!(!held.admit(), "one more than HELD");
        held.release();
        assert!(held.admit());
        // The reader gives package i the file that arrived with i, and lets it go.
        let dir = tempfile::tempdir().unwrap();
        let file = |i: usize| {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, format!("{i}")).unwrap();
            File::open(p).unwrap()
        };
        let held = Held::default();
        let (arrive, arrived) = mpsc::channel();
        let (ready_tx, ready) = mpsc::sync_channel(AHEAD);
        let budget = Budget::default();
        let seen = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                run(3, arrived, ready_tx, &budget, &held, &|i, f| {
                    let text = f.map(|f| std::io::read_to_string(f).unwrap());
                    seen.lock().unwrap().push((i, text));
                    None
                })
            });
            for i in [2, 0, 1] {
                let f = (i != 1).then(|| file(i));
                if f.is_some() {
                    assert!(held.admit());
                }
                arrive.send((i, f)).unwrap();
            }
            assert_eq!(ready.iter().count(), 3);
        });
        assert_eq!(
            seen.into_inner().unwrap(),
            [(0, Some("0".into())), (1, None), (2, Some("2".into()))]
        );
        assert_eq!(held.0.load(Ordering::SeqCst), 0);
    }
}
