// Package cache owns the on-disk piece store: per task a sparse data file, the
// digests of the pieces present, and atomically written metadata; quota and
// TTL garbage collection. It verifies every piece before storing it and never
// talks to the network.
//
// # On-disk layout
//
// Under the store root, every task has a directory tasks/<taskID>/ holding:
//
//   - meta.json: the task's Meta, replaced atomically (temporary file in the
//     same directory, fsync, rename, fsync of the directory). Its
//     modification time is the task's last access time.
//   - data: a sparse file of exactly Meta.Length bytes; piece i lives at
//     Layout.PieceRange(i).
//   - pieces: NumPieces records of 32 bytes; record i is the sha256 of piece
//     i when the piece is present, all zeros otherwise. A piece is recorded by
//     a single 32-byte write, after its data was written, so a process killed
//     at any instant leaves every piece either recorded with its data in
//     place or not recorded.
//   - dirty: present while a process has the task open. Finding it when
//     opening a task means the previous owner did not close it cleanly (crash,
//     power loss), so every recorded piece is re-hashed (Task.Verify) before
//     the task is handed out.
//   - lock: flock(LOCK_EX) by the process that has the task open. Within one
//     process a task is opened once and shared, with a reference count.
package cache
