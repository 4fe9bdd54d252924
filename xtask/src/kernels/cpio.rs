//! A writer for the `newc` cpio format, the one the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Written here rather than with
//! the cpio tool so that the archive can hold a device node (`/dev/console`, which init needs
//! before anything is mounted) without root, and so that it is byte-for-byte reproducible.

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// An archive being built in memory; entries are written in the order they are added, so a
/// folder must be added before what it holds.
pub struct Archive {
    buf: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            next_ino: 1,
        }
    }

    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, S_IFREG | perm, 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    /// Adds the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1, (0, 0), 0);
        self.buf
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let path = path.trim_start_matches('/');
        let ino = self.next_ino;
        self.next_ino += 1;
        let size = u32::try_from(data.len()).expect("initramfs files are below 4 GiB");
        self.header(path, ino, mode, nlink, rdev, size);
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// The 110-byte header (magic and 13 eight-digit hex fields), the name with its NUL, and
    /// padding to a multiple of four. Owner root, mtime 0, device 0:0.
    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), size: u32) {
        let namesize = u32::try_from(name.len() + 1).expect("short name");
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.buf.extend_from_slice(b"070701");
        for field in fields {
            self.buf
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_and_aligned() {
        let mut archive = Archive::new();
        archive.file("/init", 0o755, b"#!/bin/sh\n");
        archive.char_device("dev/console", 0o600, 5, 1);
        let bytes = archive.finish();

        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[..6], "070701");
        let field = |at: usize| u32::from_str_radix(&header[6 + 8 * at..14 + 8 * at], 16).unwrap();
        assert_eq!(field(1), 0o100_755, "mode");
        assert_eq!(field(6), 10, "file size");
        assert_eq!(field(11), 5, "name size, NUL included");
        assert_eq!(&bytes[110..115], b"init\0");
        // 110 + 5 = 115, padded to 116; then ten bytes of data padded to 12.
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        let second = std::str::from_utf8(&bytes[128..238]).unwrap();
        assert_eq!(&second[..6], "070701");
        assert_eq!(
            &second[6 + 8 * 9..6 + 8 * 11],
            "0000000500000001",
            "rdev 5:1"
        );
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(11).any(|w| w == b"TRAILER!!!\0"));
    }
}
