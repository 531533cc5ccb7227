//! The fd table: fd number -> sluice's state for that socket, lock-free for readers.
//!
//! Layout: a static first level of `CHUNKS` pointers, each to a chunk of `CHUNK_LEN` slots that is
//! allocated on first insert and never freed while the table lives. An fd whose chunk was never
//! allocated costs one atomic load to look up; any other untracked fd costs two.
//!
//! Reclamation uses split reference counts, so that a reader never sees an entry freed under it
//! and a writer (close, dup2) never waits for readers:
//! - a slot is one `AtomicU64`: the address of a heap `Binding` (low 48 bits) and a count of
//!   readers currently borrowing it (high 16 bits);
//! - a reader bumps the borrow count with a CAS, clones the `Arc` held by the binding, then gives
//!   its borrow back: with a CAS on the slot if the slot still holds that binding, or else by
//!   decrementing the binding's own `transferred` counter;
//! - a writer swaps the slot and adds the borrow count it swapped out to `transferred`;
//! - whoever brings `transferred` to zero after the swap frees the binding.
//!
//! A binding is allocated for every insert, so a slot can only show a binding's address again
//! after that binding was freed, which cannot happen while anyone still borrows it: a reader
//! that sees its binding's address in the slot knows it is the same binding (no ABA).
//! Entries shared by dup'd fds are one `Arc<T>` held by several bindings.

use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const CHUNK_BITS: u32 = 10;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 1024;
/// fds at or above this are never tracked (pass straight to the kernel). 2^20 is Linux's
/// default `fs.nr_open` ceiling.
pub const MAX_FDS: usize = CHUNK_LEN * CHUNKS;

/// x86_64 user space addresses fit in 47 bits (48 with the sign bit clear).
const ADDR_BITS: u32 = 48;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;
const ONE_BORROW: u64 = 1 << ADDR_BITS;
const MAX_BORROWS: u64 = u64::MAX >> ADDR_BITS;

struct Binding<T> {
    entry: Arc<T>,
    /// Borrows handed over by the writer that unbound this binding, minus borrows given back
    /// since; wraps below zero while readers give back before the writer hands over.
    transferred: AtomicUsize,
}

impl<T> Binding<T> {
    /// Gives back one borrow that the unbinding writer has transferred (or will).
    ///
    /// # Safety
    /// `b` is a binding this thread borrowed and that is no longer in its slot.
    unsafe fn give_back_transferred(b: *const Binding<T>) {
        // SAFETY: our outstanding borrow keeps `b` allocated until this decrement.
        if unsafe { (*b).transferred.fetch_sub(1, Ordering::AcqRel) } == 1 {
            // SAFETY: the count reached zero after the writer's hand-over: we are the last user.
            drop(unsafe { Box::from_raw(b as *mut Binding<T>) });
        }
    }
}

struct Chunk {
    slots: [AtomicU64; CHUNK_LEN],
}

/// Maps fds to shared `Arc<T>` entries. See the module documentation for the scheme.
pub struct FdTable<T> {
    chunks: [AtomicPtr<Chunk>; CHUNKS],
    _entries: PhantomData<Arc<T>>,
}

// SAFETY: the table only hands out clones of `Arc<T>` and moves them between threads, which is
// sound when `Arc<T>` itself is Send + Sync, i.e. when T is Send + Sync.
unsafe impl<T: Send + Sync> Sync for FdTable<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for FdTable<T> {}

impl<T> Default for FdTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FdTable<T> {
    pub const fn new() -> Self {
        FdTable {
            chunks: [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS],
            _entries: PhantomData,
        }
    }

    fn index(fd: c_int) -> Option<(usize, usize)> {
        let fd = usize::try_from(fd).ok().filter(|&fd| fd < MAX_FDS)?;
        Some((fd >> CHUNK_BITS, fd & (CHUNK_LEN - 1)))
    }

    /// The slot of `fd` if its chunk exists.
    fn slot(&self, fd: c_int) -> Option<&AtomicU64> {
        let (chunk, slot) = Self::index(fd)?;
        let chunk = self.chunks[chunk].load(Ordering::Acquire);
        // SAFETY: chunks are published with Release after being zeroed and are never freed
        // while `self` lives.
        unsafe { chunk.as_ref() }.map(|c| &c.slots[slot])
    }

    fn slot_or_alloc(&self, fd: c_int) -> Option<&AtomicU64> {
        let (chunk, slot) = Self::index(fd)?;
        let head = &self.chunks[chunk];
        let mut current = head.load(Ordering::Acquire);
        if current.is_null() {
            // SAFETY: an all-zero Chunk is valid (AtomicU64 zero = empty slot).
            let fresh = Box::into_raw(unsafe { Box::<Chunk>::new_zeroed().assume_init() });
            match head.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => current = fresh,
                Err(winner) => {
                    // SAFETY: `fresh` was never published.
                    drop(unsafe { Box::from_raw(fresh) });
                    current = winner;
                }
            }
        }
        // SAFETY: non-null chunks live as long as the table.
        Some(unsafe { &(*current).slots[slot] })
    }

    /// Whether `fd` has an entry: the pass-through fast path, no write, no fence.
    #[inline]
    pub fn is_tracked(&self, fd: c_int) -> bool {
        self.slot(fd)
            .is_some_and(|s| s.load(Ordering::Relaxed) & ADDR_MASK != 0)
    }

    /// The entry of `fd`, if any.
    pub fn get(&self, fd: c_int) -> Option<Arc<T>> {
        let slot = self.slot(fd)?;
        let binding = Self::borrow(slot)?;
        // SAFETY: our borrow keeps the binding allocated (module docs).
        let entry = unsafe { Arc::clone(&(*binding).entry) };
        // SAFETY: we hold one borrow of `binding`, taken from `slot`.
        unsafe { Self::give_back(slot, binding) };
        Some(entry)
    }

    /// Runs `f` on the entry of `fd`, if any, without touching the entry's reference count
    /// (two atomic operations fewer than `get`).
    pub fn with<R>(&self, fd: c_int, f: impl FnOnce(&T) -> R) -> Option<R> {
        struct Borrowed<'a, T> {
            slot: &'a AtomicU64,
            binding: *const Binding<T>,
        }
        impl<T> Drop for Borrowed<'_, T> {
            fn drop(&mut self) {
                // SAFETY: `self` holds one borrow of `binding`, taken from `slot`; given back
                // exactly once, here, even if `f` unwinds.
                unsafe { FdTable::give_back(self.slot, self.binding) };
            }
        }
        let slot = self.slot(fd)?;
        let borrowed = Borrowed {
            slot,
            binding: Self::borrow(slot)?,
        };
        // SAFETY: the borrow keeps the binding, hence its entry, alive until `borrowed` drops.
        Some(f(unsafe { &(*borrowed.binding).entry }))
    }

    /// Takes one borrow of the binding in `slot`, if there is one.
    fn borrow(slot: &AtomicU64) -> Option<*const Binding<T>> {
        let mut current = slot.load(Ordering::Acquire);
        loop {
            if current & ADDR_MASK == 0 {
                return None;
            }
            if current >> ADDR_BITS == MAX_BORROWS {
                // 65535 threads inside this very lookup: wait for one to leave.
                std::hint::spin_loop();
                current = slot.load(Ordering::Acquire);
                continue;
            }
            match slot.compare_exchange_weak(
                current,
                current + ONE_BORROW,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((current & ADDR_MASK) as *const Binding<T>),
                Err(seen) => current = seen,
            }
        }
    }

    /// # Safety
    /// The caller holds one borrow of `binding`, taken from `slot`.
    unsafe fn give_back(slot: &AtomicU64, binding: *const Binding<T>) {
        let mut current = slot.load(Ordering::Relaxed);
        while current & ADDR_MASK == binding as u64 {
            match slot.compare_exchange_weak(
                current,
                current - ONE_BORROW,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
        // Unbound meanwhile: the writer moved our borrow to `transferred`.
        // SAFETY: we hold a borrow and the binding left its slot.
        unsafe { Binding::give_back_transferred(binding) };
    }

    /// Takes over an unbound slot value: returns its entry and lets the binding be freed once
    /// the borrows swapped out with it are given back.
    ///
    /// # Safety
    /// `old` was swapped out of a slot by this thread (so no one else will retire it).
    unsafe fn retire(old: u64) -> Option<Arc<T>> {
        let binding = (old & ADDR_MASK) as *mut Binding<T>;
        if binding.is_null() {
            return None;
        }
        let borrows = (old >> ADDR_BITS) as usize;
        // SAFETY: the binding is alive until `transferred` reaches zero, which needs our add.
        let entry = unsafe { Arc::clone(&(*binding).entry) };
        // SAFETY: as above.
        let before = unsafe { (*binding).transferred.fetch_add(borrows, Ordering::AcqRel) };
        if before.wrapping_add(borrows) == 0 {
            // SAFETY: every borrow was given back: nobody else can reach the binding.
            drop(unsafe { Box::from_raw(binding) });
        }
        Some(entry)
    }

    /// Maps `fd` to `entry`, returning the entry it replaces. Gives `entry` back as `Err` when
    /// `fd` is out of the table's range (the fd then stays a plain kernel fd).
    pub fn insert(&self, fd: c_int, entry: Arc<T>) -> Result<Option<Arc<T>>, Arc<T>> {
        let Some(slot) = self.slot_or_alloc(fd) else {
            return Err(entry);
        };
        let binding = Box::into_raw(Box::new(Binding {
            entry,
            transferred: AtomicUsize::new(0),
        }));
        if binding as u64 & !ADDR_MASK != 0 {
            // Only possible with 5-level paging and a high mmap hint: don't track rather than
            // corrupt the borrow count.
            // SAFETY: never published.
            let binding = unsafe { Box::from_raw(binding) };
            return Err(binding.entry);
        }
        let old = slot.swap(binding as u64, Ordering::AcqRel);
        // SAFETY: we swapped `old` out.
        Ok(unsafe { Self::retire(old) })
    }

    /// Unmaps `fd`, returning its entry.
    pub fn remove(&self, fd: c_int) -> Option<Arc<T>> {
        let slot = self.slot(fd)?;
        if slot.load(Ordering::Relaxed) & ADDR_MASK == 0 {
            return None;
        }
        let old = slot.swap(0, Ordering::AcqRel);
        // SAFETY: we swapped `old` out.
        unsafe { Self::retire(old) }
    }

    /// Unmaps every fd in `first..=last` (close_range, closefrom). Visits allocated chunks only.
    pub fn remove_range(&self, first: c_int, last: c_int) {
        let first = first.max(0) as usize;
        let last = (last.max(-1) as isize).min(MAX_FDS as isize - 1);
        if last < first as isize {
            return;
        }
        let last = last as usize;
        for chunk in first >> CHUNK_BITS..=last >> CHUNK_BITS {
            if self.chunks[chunk].load(Ordering::Acquire).is_null() {
                continue;
            }
            let lo = (chunk << CHUNK_BITS).max(first);
            let hi = ((chunk << CHUNK_BITS) + CHUNK_LEN - 1).min(last);
            for fd in lo..=hi {
                self.remove(fd as c_int);
            }
        }
    }

    /// After a successful `dup*(old) -> new`: `new` shares `old`'s entry, or is untracked like
    /// `old` (dropping whatever `new` referred to before).
    pub fn duplicate(&self, old: c_int, new: c_int) {
        match self.get(old) {
            Some(entry) => {
                let _ = self.insert(new, entry);
            }
            None => {
                self.remove(new);
            }
        }
    }
}

impl<T> Drop for FdTable<T> {
    fn drop(&mut self) {
        for head in &self.chunks {
            let chunk = head.swap(ptr::null_mut(), Ordering::AcqRel);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: `&mut self`: no reader or writer is left; the chunk was ours.
            let chunk = unsafe { Box::from_raw(chunk) };
            for slot in &chunk.slots {
                // SAFETY: swapped out by us.
                unsafe { Self::retire(slot.swap(0, Ordering::AcqRel)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// An entry that checks it is never used after being dropped and counts drops.
    #[derive(Debug)]
    struct Probe {
        id: usize,
        alive: AtomicBool,
        drops: Arc<AtomicUsize>,
    }

    impl Probe {
        fn new(id: usize, drops: &Arc<AtomicUsize>) -> Arc<Probe> {
            Arc::new(Probe {
                id,
                alive: AtomicBool::new(true),
                drops: Arc::clone(drops),
            })
        }
        fn check(&self) {
            assert!(self.alive.load(Ordering::SeqCst), "entry used after free");
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            assert!(
                self.alive.swap(false, Ordering::SeqCst),
                "entry freed twice"
            );
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn insert_get_remove() {
        let drops = Arc::new(AtomicUsize::new(0));
        let table = FdTable::new();
        assert!(!table.is_tracked(3));
        assert!(table.get(3).is_none());
        assert!(table.insert(3, Probe::new(1, &drops)).unwrap().is_none());
        assert!(table.is_tracked(3));
        assert_eq!(table.get(3).unwrap().id, 1);
        assert_eq!(table.with(3, |e| e.id), Some(1));
        assert_eq!(table.with(4, |e| e.id), None);
        assert!(!table.is_tracked(4));
        let old = table.insert(3, Probe::new(2, &drops)).unwrap().unwrap();
        assert_eq!(old.id, 1);
        drop(old);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(table.remove(3).unwrap().id, 2);
        assert!(!table.is_tracked(3));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn out_of_range_fds_are_never_tracked() {
        let drops = Arc::new(AtomicUsize::new(0));
        let table = FdTable::new();
        for fd in [-1, MAX_FDS as c_int, c_int::MAX] {
            assert!(table.insert(fd, Probe::new(0, &drops)).is_err());
            assert!(!table.is_tracked(fd));
            assert!(table.get(fd).is_none());
            assert!(table.remove(fd).is_none());
        }
        let last = MAX_FDS as c_int - 1;
        assert!(table.insert(last, Probe::new(9, &drops)).is_ok());
        assert_eq!(table.get(last).unwrap().id, 9);
    }

    #[test]
    fn duplicates_share_one_entry_and_outlive_each_other() {
        let drops = Arc::new(AtomicUsize::new(0));
        let table = FdTable::new();
        table.insert(5, Probe::new(7, &drops)).unwrap();
        table.duplicate(5, 2000);
        assert!(Arc::ptr_eq(
            &table.get(5).unwrap(),
            &table.get(2000).unwrap()
        ));
        drop(table.remove(5));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "close of one dup keeps the other"
        );
        assert_eq!(table.get(2000).unwrap().id, 7);
        // dup2 of an untracked fd over a tracked one drops the tracked one.
        table.duplicate(6, 2000);
        assert!(!table.is_tracked(2000));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    /// The two orders in which a reader and a writer can meet on one binding, played step by
    /// step: the entry must stay alive while borrowed and be freed exactly once after.
    #[test]
    fn a_borrowed_binding_outlives_its_unbinding() {
        let drops = Arc::new(AtomicUsize::new(0));
        let table = FdTable::new();
        let slot_of = |t: &FdTable<Probe>| t.slot(3).unwrap() as *const AtomicU64;

        // Writer hands over first, reader gives back last.
        table.insert(3, Probe::new(1, &drops)).unwrap();
        // SAFETY: the slot lives as long as `table`.
        let slot = unsafe { &*slot_of(&table) };
        let b = FdTable::<Probe>::borrow(slot).unwrap();
        drop(table.remove(3));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "borrowed binding keeps its entry"
        );
        // SAFETY: still borrowed.
        unsafe { (*b).entry.check() };
        // SAFETY: our borrow.
        unsafe { FdTable::give_back(slot, b) };
        assert_eq!(drops.load(Ordering::SeqCst), 1);

        // Reader gives back between the writer's swap and its hand-over.
        table.insert(3, Probe::new(2, &drops)).unwrap();
        let b = FdTable::<Probe>::borrow(slot).unwrap();
        let old = slot.swap(0, Ordering::AcqRel);
        // SAFETY: our borrow; the binding left the slot.
        unsafe { FdTable::give_back(slot, b) };
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // SAFETY: we swapped `old` out.
        drop(unsafe { FdTable::<Probe>::retire(old) });
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn remove_range_unmaps_exactly_the_range() {
        let drops = Arc::new(AtomicUsize::new(0));
        let table = FdTable::new();
        for fd in [3, 4, 1023, 1024, 5000, MAX_FDS as c_int - 1] {
            table.insert(fd, Probe::new(fd as usize, &drops)).unwrap();
        }
        table.remove_range(4, 1024);
        let tracked: Vec<c_int> = [3, 4, 1023, 1024, 5000, MAX_FDS as c_int - 1]
            .into_iter()
            .filter(|&fd| table.is_tracked(fd))
            .collect();
        assert_eq!(tracked, [3, 5000, MAX_FDS as c_int - 1]);
        table.remove_range(4000, c_int::MAX);
        assert!(table.is_tracked(3) && !table.is_tracked(5000));
        assert!(!table.is_tracked(MAX_FDS as c_int - 1));
        table.remove_range(10, 2);
        assert!(table.is_tracked(3));
        assert_eq!(drops.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn dropping_the_table_frees_every_entry() {
        let drops = Arc::new(AtomicUsize::new(0));
        let table = FdTable::new();
        for fd in (0..5000).step_by(7) {
            table.insert(fd, Probe::new(fd as usize, &drops)).unwrap();
        }
        let kept = table.get(70).unwrap();
        drop(table);
        assert_eq!(drops.load(Ordering::SeqCst), 5000 / 7);
        kept.check();
        drop(kept);
        assert_eq!(drops.load(Ordering::SeqCst), 5000 / 7 + 1);
    }

    /// Threads insert, replace, duplicate, remove and look up a small set of fds at once, so
    /// that slots are swapped under readers all the time. Every entry created must be dropped
    /// exactly once (Probe panics on a double drop) and no reader may see a dropped entry.
    #[test]
    fn concurrent_churn_loses_and_double_frees_nothing() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 20_000;
        const FDS: c_int = 16;
        let drops = Arc::new(AtomicUsize::new(0));
        let created = Arc::new(AtomicUsize::new(0));
        let table = Arc::new(FdTable::<Probe>::new());
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (table, drops, created) = (table.clone(), drops.clone(), created.clone());
                std::thread::spawn(move || {
                    // xorshift: deterministic per thread, no dependency.
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                    let mut next = || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    for _ in 0..ROUNDS {
                        let r = next();
                        let fd = (r % FDS as u64) as c_int;
                        match (r >> 8) % 8 {
                            0 | 1 => {
                                created.fetch_add(1, Ordering::SeqCst);
                                let id = (t << 32) | fd as usize;
                                if let Ok(Some(old)) = table.insert(fd, Probe::new(id, &drops)) {
                                    old.check();
                                }
                            }
                            2 => {
                                if let Some(old) = table.remove(fd) {
                                    old.check();
                                }
                            }
                            3 => table.duplicate(fd, ((r >> 16) % FDS as u64) as c_int),
                            4 => {
                                table.with(fd, Probe::check);
                            }
                            _ => {
                                if let Some(e) = table.get(fd) {
                                    e.check();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker panicked");
        }
        let live: Vec<_> = (0..FDS).filter_map(|fd| table.get(fd)).collect();
        for e in &live {
            e.check();
        }
        drop(live);
        let table = Arc::try_unwrap(table).ok().expect("no other owner");
        drop(table);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            created.load(Ordering::SeqCst),
            "every entry created is dropped exactly once"
        );
    }
}
