//! Disk I/O with a known shape: write then read a file of its own, with `O_DIRECT` (every byte
//! goes to the device) or buffered with `fsync`, on the main thread or on worker threads that
//! each do their share and exit one by one. The ground truth is the process's own
//! `/proc/self/io` once the work is done: the kernel's accounting, which the profiler must
//! match byte for byte.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use super::{emit, wait_for_go, wait_for_stdin_close};
use crate::procfs;

/// I/O size and buffer alignment: a multiple of every block size O_DIRECT may demand.
const CHUNK: usize = 1 << 20;
const ALIGN: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct Spec {
    /// Directory for the files; must support O_DIRECT when `--direct` (tmpfs does not).
    #[arg(long)]
    pub dir: PathBuf,
    /// MiB each worker (or the main thread) writes.
    #[arg(long)]
    pub write_mib: usize,
    /// MiB each worker reads back from what it wrote (O_DIRECT only: buffered reads would hit
    /// the page cache).
    #[arg(long, default_value_t = 0)]
    pub read_mib: usize,
    /// O_DIRECT instead of buffered writes with fsync.
    #[arg(long)]
    pub direct: bool,
    /// Worker threads, each doing the whole I/O on its own file, started and joined one by one;
    /// 0: the main thread does it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Wait for `go` on stdin before any I/O.
    #[arg(long)]
    pub wait_go: bool,
    /// Stay alive after reporting until stdin closes.
    #[arg(long)]
    pub wait_after: bool,
}

pub fn run(spec: &Spec) -> Result<()> {
    if spec.wait_go {
        wait_for_go()?;
    }
    if spec.threads == 0 {
        work(spec, 0)?;
    } else {
        for index in 0..spec.threads {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| work(spec, index))
                    .join()
                    .map_err(|_| anyhow::anyhow!("worker {index} panicked"))?
            })?;
        }
    }
    emit(&procfs::disk_io(std::process::id()))?;
    if spec.wait_after {
        wait_for_stdin_close()?;
    }
    Ok(())
}

/// One share of the work, on a file of its own that is removed before returning.
fn work(spec: &Spec, index: usize) -> Result<()> {
    let path = spec
        .dir
        .join(format!("mm-disk-{}-{index}", std::process::id()));
    let result = write_and_read(spec, &path);
    let removed = std::fs::remove_file(&path);
    result?;
    removed.with_context(|| format!("removing {}", path.display()))
}

fn write_and_read(spec: &Spec, path: &Path) -> Result<()> {
    let mut buffer = AlignedChunk::new();
    let mut options = OpenOptions::new();
    options.create_new(true).write(true).read(true);
    if spec.direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let mut file = options.open(path).with_context(|| {
        format!(
            "opening {} (with O_DIRECT: {}); a directory on tmpfs cannot take O_DIRECT, use \
             one on a disk",
            path.display(),
            spec.direct
        )
    })?;
    for _ in 0..spec.write_mib {
        file.write_all(buffer.bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !spec.direct {
        file.sync_all()
            .with_context(|| format!("fsync of {}", path.display()))?;
    }
    ensure!(
        spec.read_mib == 0 || spec.direct,
        "reads are O_DIRECT only: buffered ones would come from the page cache"
    );
    ensure!(
        spec.read_mib <= spec.write_mib,
        "cannot read more than was written"
    );
    let mut reader: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    for _ in 0..spec.read_mib {
        reader
            .read_exact(buffer.bytes_mut())
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(())
}

/// One CHUNK of memory aligned for O_DIRECT, freed on drop.
struct AlignedChunk(*mut u8);

impl AlignedChunk {
    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(CHUNK, ALIGN).expect("a valid layout")
    }

    fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
        assert!(!pointer.is_null(), "allocating {CHUNK} bytes");
        AlignedChunk(pointer)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: CHUNK initialised bytes, owned by self.
        unsafe { std::slice::from_raw_parts(self.0, CHUNK) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0, CHUNK) }
    }
}

impl Drop for AlignedChunk {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { std::alloc::dealloc(self.0, Self::layout()) }
    }
}
