//! One generational table: a `Slab` whose keys carry a generation.
//!
//! A slab reuses the key of a removed entry for the next one inserted. An
//! [`Id`] is that key plus the generation the entry was inserted with, and
//! [`Table::get`], [`Table::get_mut`] and [`Table::remove`] check both: an
//! event, timer or room entry that still names a closed connection (or an
//! expired session) finds nothing, never the newer occupant of its slot.
//! Connections and chat sessions both live in one of these.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use slab::Slab;

/// The name of one entry of a `Table<T>`: its slot and its generation.
/// `T` only keeps the ids of different tables apart (a session id cannot
/// be passed where a connection id is expected); an id holds no `T`.
pub struct Id<T> {
    /// The slot in the table.
    pub key: u32,
    /// Which occupant of that slot.
    pub generation: u32,
    of: PhantomData<fn() -> T>,
}

impl<T> Id<T> {
    /// The id with this key and generation (a stale one names nothing).
    pub fn new(key: u32, generation: u32) -> Self {
        Id {
            key,
            generation,
            of: PhantomData,
        }
    }
}

// Written by hand: `derive` would require `T` itself to be `Copy`, `Eq`...

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Id<T> {}

impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.generation) == (other.key, other.generation)
    }
}

impl<T> Eq for Id<T> {}

impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.key, self.generation).cmp(&(other.key, other.generation))
    }
}

impl<T> Hash for Id<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.key, self.generation).hash(state);
    }
}

impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.key, self.generation)
    }
}

/// One occupied slot: the generation it was filled with, and the value.
#[derive(Debug)]
pub struct Slot<T> {
    generation: u32,
    value: T,
}

/// Values named by [`Id`]s that never outlive them.
#[derive(Debug)]
pub struct Table<T> {
    slots: Slab<Slot<T>>,
    /// The generation of the last insert (counts every insert, wrapping).
    generation: u32,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: Slab::new(),
            generation: 0,
        }
    }
}

impl<T> Table<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` and returns its id.
    pub fn insert(&mut self, value: T) -> Id<T> {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let key = self.slots.insert(Slot { generation, value });
        Id::new(key as u32, generation)
    }

    /// The value `id` names, if it is still there.
    pub fn get(&self, id: Id<T>) -> Option<&T> {
        let slot = self.slots.get(id.key as usize)?;
        (slot.generation == id.generation).then_some(&slot.value)
    }

    /// The value `id` names, if it is still there.
    pub fn get_mut(&mut self, id: Id<T>) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.key as usize)?;
        (slot.generation == id.generation).then_some(&mut slot.value)
    }

    /// Takes out the value `id` names, if it is still there.
    pub fn remove(&mut self, id: Id<T>) -> Option<T> {
        self.get(id)?;
        Some(self.slots.remove(id.key as usize).value)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every value with its id, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Id<T>, &T)> {
        self.slots
            .iter()
            .map(|(key, slot)| (Id::new(key as u32, slot.generation), &slot.value))
    }

    /// Every value, to change in place, in slot order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().map(|(_, slot)| &mut slot.value)
    }

    /// The ids of every value (a snapshot, to change the table meanwhile).
    pub fn ids(&self) -> Vec<Id<T>> {
        self.iter().map(|(id, _)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_id_never_names_the_next_occupant() {
        let mut table = Table::new();
        let old = table.insert("old");
        assert_eq!(table.get(old), Some(&"old"));
        assert_eq!(table.remove(old), Some("old"));
        let new = table.insert("new");
        assert_eq!(new.key, old.key, "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(table.get(old), None);
        assert_eq!(table.get_mut(old), None);
        assert_eq!(table.remove(old), None, "and not removed by the old id");
        assert_eq!(table.get(new), Some(&"new"));
        assert_eq!(table.iter().map(|(id, _)| id).collect::<Vec<_>>(), [new]);
        assert_eq!(table.len(), 1);
    }
}
