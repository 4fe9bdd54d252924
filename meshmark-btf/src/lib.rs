//! Minimal reader of BPF Type Format (BTF) as the kernel exposes it at /sys/kernel/btf/vmlinux.
//!
//! meshmark's kernel programs are Rust, and rustc cannot emit CO-RE relocation records (clang's
//! `preserve_access_index`), so there is nothing for a loader to relocate: aya-obj applies such
//! relocations when an object carries them, but ours carries none. The agent therefore takes the
//! few kernel struct member offsets its programs need from the running kernel's BTF and passes
//! them in as read-only globals. It also asks which BTF tracepoints exist and how many arguments
//! they take, and whether a kernel function exists for fexit.
//!
//! Why a reader of our own: aya-obj parses BTF too, but its public API (0.3) only looks up a
//! type's id by name; the types behind the ids, struct members with their offsets and function
//! prototypes with their parameters, are private to it.
//!
//! [`Btf::parse`] checks the header and walks the type section once, recording where each type
//! record starts (which needs every kind's record size). Names are matched by scanning only when a
//! question is asked, so parsing the ~5 MB vmlinux blob costs little more than copying it. Reads
//! are bounds-checked and walks over type references are bounded, so malformed input gives an
//! error or `None`, never a panic or a hang. The layout is the kernel's include/uapi/linux/btf.h.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

const SYS_FS_PATH: &str = "/sys/kernel/btf/vmlinux";
const MAGIC: u16 = 0xeb9f;
const VERSION: u8 = 1;
const HEADER_LEN: usize = 24;
/// name_off, info, size_or_type: the part every type record starts with.
const TYPE_HEADER_LEN: usize = 12;
/// Longest chain of type references followed (libbpf's bound too); cyclic input stops here.
const MAX_DEPTH: usize = 32;

/// Why BTF could not be read or parsed.
#[derive(Debug)]
pub struct BtfError {
    message: String,
}

impl BtfError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BtfError {}

/// Parsed BTF: the raw type and string sections plus where each type record starts.
pub struct Btf {
    types: Vec<u8>,
    /// Start of each record in `types`; type id N is at index N - 1 (id 0 is `void`).
    starts: Vec<usize>,
    /// NUL-terminated names; starts and ends with a NUL, so every in-range offset ends in one.
    strings: Vec<u8>,
}

/// BTF kinds, numbered as in the kernel's `BTF_KIND_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int = 1,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Kind> {
        use Kind::*;
        const ALL: [Kind; 19] = [
            Int, Ptr, Array, Struct, Union, Enum, Fwd, Typedef, Volatile, Const, Restrict, Func,
            FuncProto, Var, Datasec, Float, DeclTag, TypeTag, Enum64,
        ];
        ALL.into_iter().find(|&kind| kind as u32 == raw)
    }

    /// Bytes that follow the common type header for a record of this kind with `vlen` entries.
    fn trailing_len(self, vlen: usize) -> usize {
        use Kind::*;
        match self {
            Ptr | Fwd | Typedef | Volatile | Const | Restrict | Func | Float | TypeTag => 0,
            Int | Var | DeclTag => 4,
            Array => 12,
            // Members and DATASEC / ENUM64 entries are 12 bytes; enumerators and parameters 8.
            // vlen is at most 0xffff, so neither product comes near overflow.
            Struct | Union | Datasec | Enum64 => vlen.saturating_mul(12),
            Enum | FuncProto => vlen.saturating_mul(8),
        }
    }

    /// Kinds that only qualify or rename the type they point at.
    fn is_modifier(self) -> bool {
        use Kind::*;
        matches!(self, Typedef | Volatile | Const | Restrict | TypeTag)
    }

    fn is_composite(self) -> bool {
        matches!(self, Kind::Struct | Kind::Union)
    }
}

/// One type record, decoded only as far as this module needs.
struct Type<'a> {
    name_off: u32,
    kind: Kind,
    kind_flag: bool,
    /// A size for sized kinds, the referenced type id for the others.
    size_or_type: u32,
    /// The kind-specific part after the common header.
    trailing: &'a [u8],
}

impl<'a> Type<'a> {
    /// Decodes the record at `start` of a type section; the error says what was wrong with it.
    fn read(types: &'a [u8], start: usize) -> Result<Self, String> {
        let word = |at: usize| {
            start
                .checked_add(at)
                .and_then(|offset| u32_at(types, offset))
                .ok_or("its header runs past the end of the type section")
        };
        let (name_off, info, size_or_type) = (word(0)?, word(4)?, word(8)?);
        let raw_kind = (info >> 24) & 0x1f;
        let kind = Kind::from_raw(raw_kind).ok_or_else(|| format!("unknown kind {raw_kind}"))?;
        let vlen = (info & 0xffff) as usize;
        let body = start.saturating_add(TYPE_HEADER_LEN);
        let trailing = body
            .checked_add(kind.trailing_len(vlen))
            .and_then(|end| types.get(body..end))
            .ok_or_else(|| {
                format!("its {kind:?} data (vlen {vlen}) runs past the end of the type section")
            })?;
        Ok(Type {
            name_off,
            kind,
            kind_flag: info >> 31 == 1,
            size_or_type,
            trailing,
        })
    }

    fn record_len(&self) -> usize {
        // A slice of the type section: far below usize::MAX.
        TYPE_HEADER_LEN.saturating_add(self.trailing.len())
    }

    /// Struct/union members as (name_off, type id, offset word); empty for other kinds.
    fn members(&self) -> impl Iterator<Item = (u32, u32, u32)> + 'a {
        let entries = if self.kind.is_composite() {
            self.trailing
        } else {
            &[]
        };
        entries
            .chunks_exact(12)
            .filter_map(|m| Some((u32_at(m, 0)?, u32_at(m, 4)?, u32_at(m, 8)?)))
    }

    /// Function prototype parameter type ids; empty for other kinds.
    fn params(&self) -> impl Iterator<Item = u32> + 'a {
        let entries = if self.kind == Kind::FuncProto {
            self.trailing
        } else {
            &[]
        };
        entries.chunks_exact(8).filter_map(|p| u32_at(p, 4))
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_ne_bytes(word.try_into().ok()?))
}

impl Btf {
    /// Parses raw BTF: header (magic 0xeB9F, version 1), type section, string section. Host
    /// endianness only (error otherwise).
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        let magic = bytes
            .get(..2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_ne_bytes)
            .ok_or_else(|| BtfError::new("input is too short to hold the BTF magic"))?;
        if magic == MAGIC.swap_bytes() {
            return Err(BtfError::new(
                "BTF is in the other byte order than this host's; only host-endian BTF is supported",
            ));
        }
        if magic != MAGIC {
            return Err(BtfError::new(format!(
                "bad BTF magic {magic:#06x}, expected {MAGIC:#06x}"
            )));
        }
        if bytes.len() < HEADER_LEN {
            return Err(BtfError::new(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte BTF header",
                bytes.len()
            )));
        }
        let version = bytes[2];
        if version != VERSION {
            return Err(BtfError::new(format!(
                "unsupported BTF version {version}, expected {VERSION}"
            )));
        }
        // The header was length-checked above, so these reads succeed; 0 only keeps them total.
        let header = |at: usize| u32_at(bytes, at).map_or(0, |w| w as usize);
        let header_len = header(4);
        if header_len < HEADER_LEN || header_len > bytes.len() {
            return Err(BtfError::new(format!(
                "BTF header length {header_len} is outside {HEADER_LEN}..={}",
                bytes.len()
            )));
        }
        let section = |what: &str, offset: usize, len: usize| {
            header_len
                .checked_add(offset)
                .and_then(|start| bytes.get(start..start.checked_add(len)?))
                .ok_or_else(|| {
                    BtfError::new(format!(
                        "{what} section ({len} bytes at offset {offset}) runs past the end of the {}-byte input",
                        bytes.len()
                    ))
                })
        };
        let types = section("type", header(8), header(12))?;
        let strings = section("string", header(16), header(20))?;
        if strings.first() != Some(&0) || strings.last() != Some(&0) {
            return Err(BtfError::new(
                "string section must start and end with a NUL byte",
            ));
        }

        let mut starts = Vec::with_capacity(types.len() / 16);
        let mut start = 0;
        while start < types.len() {
            let record = Type::read(types, start).map_err(|why| {
                BtfError::new(format!(
                    "type id {} at byte {start} of the type section: {why}",
                    starts.len().saturating_add(1)
                ))
            })?;
            starts.push(start);
            start = start.saturating_add(record.record_len());
        }
        Ok(Btf {
            types: types.to_vec(),
            starts,
            strings: strings.to_vec(),
        })
    }

    /// Reads and parses /sys/kernel/btf/vmlinux. A missing file gives an error that names the
    /// path and says the kernel needs CONFIG_DEBUG_INFO_BTF=y.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        Self::from_file(Path::new(SYS_FS_PATH))
    }

    fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let bytes = std::fs::read(path).map_err(|e| {
            BtfError::new(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} does not exist: the kernel needs CONFIG_DEBUG_INFO_BTF=y",
                    path.display()
                )
            } else {
                format!("reading {}: {e}", path.display())
            })
        })?;
        Self::parse(&bytes).map_err(|e| BtfError::new(format!("{}: {e}", path.display())))
    }

    /// Byte offset of `member` in struct/union `type_name` (first struct/union of that name),
    /// looking through anonymous struct/union members (e.g. sock_common.skc_daddr sits in an
    /// anonymous struct in an anonymous union) and through typedef/const/volatile modifiers on
    /// them. None if absent or a bitfield not on a byte boundary.
    pub fn member_offset(&self, type_name: &str, member: &str) -> Option<u32> {
        // Anonymous types and members have no name a caller could mean.
        if type_name.is_empty() || member.is_empty() {
            return None;
        }
        let id = self.find(type_name, |kind| kind.is_composite())?;
        let bits = self.member_bits(id, member.as_bytes(), &mut HashSet::new(), 0)?;
        if bits % 8 != 0 {
            return None;
        }
        u32::try_from(bits / 8).ok()
    }

    /// Number of arguments of BTF tracepoint `tracepoint`: typedef `btf_trace_<tracepoint>` is a
    /// pointer to a FUNC_PROTO whose first parameter is the `void *` context; return the
    /// parameter count minus that one. None when the typedef does not exist or has another shape.
    pub fn tracepoint_arg_count(&self, tracepoint: &str) -> Option<usize> {
        let typedef = self.find(&format!("btf_trace_{tracepoint}"), |k| k == Kind::Typedef)?;
        let (_, pointer) = self.skip_modifiers(typedef)?;
        if pointer.kind != Kind::Ptr {
            return None;
        }
        let (_, proto) = self.skip_modifiers(pointer.size_or_type)?;
        let mut params = proto.params();
        let (_, context) = self.skip_modifiers(params.next()?)?;
        let is_void_pointer = context.kind == Kind::Ptr && context.size_or_type == 0;
        is_void_pointer.then(|| params.count())
    }

    /// Whether the kernel has a function `name` (a BTF `FUNC`), as fexit needs.
    pub fn has_function(&self, name: &str) -> bool {
        !name.is_empty() && self.find(name, |kind| kind == Kind::Func).is_some()
    }

    fn get(&self, id: u32) -> Option<Type<'_>> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        Type::read(&self.types, *self.starts.get(index)?).ok()
    }

    /// Id of the first type named `name` whose kind passes `wanted`.
    fn find(&self, name: &str, wanted: impl Fn(Kind) -> bool) -> Option<u32> {
        let index = self.starts.iter().position(|&start| {
            Type::read(&self.types, start)
                .is_ok_and(|t| wanted(t.kind) && self.name_is(t.name_off, name.as_bytes()))
        })?;
        u32::try_from(index.checked_add(1)?).ok()
    }

    /// Whether the string at `offset` is exactly `name`, compared in place so scans stay cheap.
    fn name_is(&self, offset: u32, name: &[u8]) -> bool {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        rest.starts_with(name) && rest.get(name.len()) == Some(&0)
    }

    /// The type `id` refers to once modifiers are stripped, with its id; None for `void`, a
    /// dangling id or a chain longer than [`MAX_DEPTH`] (a cycle).
    fn skip_modifiers(&self, mut id: u32) -> Option<(u32, Type<'_>)> {
        for _ in 0..MAX_DEPTH {
            let t = self.get(id)?;
            if !t.kind.is_modifier() {
                return Some((id, t));
            }
            id = t.size_or_type;
        }
        None
    }

    /// Bit offset of `member` in composite `id`, searching anonymous members depth-first in
    /// declaration order. `searched` holds composites already searched without success: the
    /// answer would not change, and skipping them bounds the work on cyclic or shared input.
    fn member_bits(
        &self,
        id: u32,
        member: &[u8],
        searched: &mut HashSet<u32>,
        depth: usize,
    ) -> Option<u64> {
        if depth >= MAX_DEPTH || !searched.insert(id) {
            return None;
        }
        let composite = self.get(id)?;
        for (name_off, type_id, offset) in composite.members() {
            // With kind_flag set, the top 8 bits of the offset word are the bitfield size.
            let bits = u64::from(if composite.kind_flag {
                offset & 0x00ff_ffff
            } else {
                offset
            });
            if self.name_is(name_off, member) {
                return Some(bits);
            }
            if self.name_is(name_off, b"") {
                let found = self.skip_modifiers(type_id).and_then(|(inner, _)| {
                    self.member_bits(inner, member, searched, depth.saturating_add(1))
                });
                if let Some(found) = found {
                    return bits.checked_add(found);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    // The builder lays out fixtures of a few hundred bytes; its sizes and counts cannot overflow.
    #![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Assembles host-endian BTF blobs; each method appends one type record and returns its id.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let offset = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            offset
        }

        /// Appends a record: the common header, then the `trailing` words as given.
        fn record(
            &mut self,
            name: &str,
            kind: Kind,
            kind_flag: bool,
            vlen: usize,
            size_or_type: u32,
            trailing: &[u32],
        ) -> u32 {
            let info = (kind as u32) << 24 | u32::from(kind_flag) << 31 | vlen as u32;
            let name_off = self.name(name);
            for word in [name_off, info, size_or_type].iter().chain(trailing) {
                self.types.extend_from_slice(&word.to_ne_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            self.record(name, Kind::Int, false, 0, size, &[size * 8])
        }

        /// A kind whose record is only the common header, pointing at type `to`.
        fn refer(&mut self, kind: Kind, name: &str, to: u32) -> u32 {
            self.record(name, kind, false, 0, to, &[])
        }

        /// `members` are (name, type id, offset word); with `kind_flag` the word's top byte is
        /// the bitfield size.
        fn composite(
            &mut self,
            kind: Kind,
            name: &str,
            size: u32,
            kind_flag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut trailing = Vec::new();
            for &(member, type_id, offset) in members {
                trailing.extend([self.name(member), type_id, offset]);
            }
            self.record(name, kind, kind_flag, members.len(), size, &trailing)
        }

        fn func_proto(&mut self, params: &[u32]) -> u32 {
            let trailing: Vec<u32> = params.iter().flat_map(|&p| [0, p]).collect();
            self.record("", Kind::FuncProto, false, params.len(), 0, &trailing)
        }

        /// A tracepoint as the kernel describes it: typedef btf_trace_<name> -> pointer -> proto.
        fn tracepoint(&mut self, name: &str, params: &[u32]) -> u32 {
            let proto = self.func_proto(params);
            let pointer = self.refer(Kind::Ptr, "", proto);
            self.refer(Kind::Typedef, &format!("btf_trace_{name}"), pointer)
        }

        fn build(&self) -> Vec<u8> {
            let (types, strings) = (self.types.len() as u32, self.strings.len() as u32);
            let mut blob = MAGIC.to_ne_bytes().to_vec();
            blob.extend([VERSION, 0]);
            for word in [HEADER_LEN as u32, 0, types, types, strings] {
                blob.extend_from_slice(&word.to_ne_bytes());
            }
            blob.extend_from_slice(&self.types);
            blob.extend_from_slice(&self.strings);
            blob
        }
    }

    /// A sock_common-like layout, bitfields, a union and tracepoints of several shapes.
    fn fixture() -> Vec<u8> {
        use Kind::*;
        let mut b = Builder::new();
        let byte = b.int("unsigned char", 1);
        let u16_ = b.int("u16", 2);
        let u32_ = b.int("u32", 4);
        let u64_ = b.int("u64", 8);
        // A non-composite of the same name comes first and must be passed over.
        b.refer(Typedef, "sock_like", u32_);
        let pair = b.composite(
            Struct,
            "",
            8,
            false,
            &[("daddr", u32_, 0), ("saddr", u32_, 32)],
        );
        let union = b.composite(Union, "", 8, false, &[("addrpair", u64_, 0), ("", pair, 0)]);
        let constant = b.refer(Const, "", union);
        let typedef = b.refer(Typedef, "addr_t", constant);
        let volatile = b.refer(Volatile, "", typedef);
        let named = b.composite(Struct, "named_pair", 8, false, &[("daddr", u32_, 0)]);
        let sock = b.composite(
            Struct,
            "sock_like",
            24,
            false,
            &[
                ("named", named, 0),
                ("", volatile, 64),
                ("family", u16_, 128),
            ],
        );
        b.composite(Struct, "sock_like", 2, false, &[("family", u16_, 0)]);
        b.composite(
            Struct,
            "flags",
            8,
            true,
            &[
                ("state", byte, 0),
                ("reuse", byte, 4 << 24 | 8),
                ("ipv6only", byte, 1 << 24 | 13),
                ("wide", u16_, 16 << 24 | 16),
                ("bound", u32_, 32),
            ],
        );
        b.composite(Struct, "plain_flags", 4, false, &[("odd", byte, 12)]);
        b.composite(
            Union,
            "either",
            8,
            false,
            &[("small", u16_, 0), ("big", u64_, 0)],
        );
        let void_ptr = b.refer(Ptr, "", 0);
        let sock_ptr = b.refer(Ptr, "", sock);
        b.tracepoint("two_args", &[void_ptr, sock_ptr, u32_]);
        b.tracepoint("no_args", &[void_ptr]);
        b.tracepoint("no_context", &[u32_, u32_]);
        b.tracepoint("empty", &[]);
        b.refer(Typedef, "btf_trace_not_a_pointer", u32_);
        b.build()
    }

    fn parsed_fixture() -> Btf {
        Btf::parse(&fixture()).expect("fixture parses")
    }

    fn parse_error(bytes: &[u8]) -> String {
        match Btf::parse(bytes) {
            Ok(_) => panic!("parse should have failed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn anonymous_members_are_searched_through_modifiers() {
        let btf = parsed_fixture();
        // daddr also sits in the named member at 0, which must not be descended into.
        assert_eq!(btf.member_offset("sock_like", "daddr"), Some(8));
        assert_eq!(btf.member_offset("sock_like", "saddr"), Some(12));
        assert_eq!(btf.member_offset("sock_like", "addrpair"), Some(8));
        assert_eq!(btf.member_offset("sock_like", "named"), Some(0));
        // The first struct of the name wins over the later one, where family is at 0.
        assert_eq!(btf.member_offset("sock_like", "family"), Some(16));
        assert_eq!(btf.member_offset("either", "big"), Some(0));
    }

    #[test]
    fn missing_names_give_none() {
        let btf = parsed_fixture();
        assert_eq!(btf.member_offset("sock_like", "missing"), None);
        assert_eq!(btf.member_offset("sock_like", ""), None);
        assert_eq!(btf.member_offset("no_such_struct", "family"), None);
        assert_eq!(btf.member_offset("addr_t", "daddr"), None);
        assert_eq!(btf.member_offset("", "daddr"), None);
        assert_eq!(btf.tracepoint_arg_count("missing"), None);
        assert_eq!(btf.tracepoint_arg_count(""), None);
    }

    #[test]
    fn bitfields_resolve_only_on_byte_boundaries() {
        let btf = parsed_fixture();
        assert_eq!(btf.member_offset("flags", "state"), Some(0));
        assert_eq!(btf.member_offset("flags", "reuse"), Some(1));
        assert_eq!(btf.member_offset("flags", "ipv6only"), None);
        assert_eq!(btf.member_offset("flags", "wide"), Some(2));
        assert_eq!(btf.member_offset("flags", "bound"), Some(4));
        assert_eq!(btf.member_offset("plain_flags", "odd"), None);
    }

    #[test]
    fn tracepoint_arg_counts_exclude_the_context() {
        let btf = parsed_fixture();
        assert_eq!(btf.tracepoint_arg_count("two_args"), Some(2));
        assert_eq!(btf.tracepoint_arg_count("no_args"), Some(0));
        assert_eq!(btf.tracepoint_arg_count("no_context"), None);
        assert_eq!(btf.tracepoint_arg_count("empty"), None);
        assert_eq!(btf.tracepoint_arg_count("not_a_pointer"), None);
    }

    #[test]
    fn every_kind_is_sized() {
        use Kind::*;
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.refer(Ptr, "", int);
        b.record("", Array, false, 0, 0, &[int, int, 3]);
        let s = b.composite(Struct, "s", 8, false, &[("a", int, 0), ("b", int, 32)]);
        b.composite(Union, "u", 4, false, &[("a", int, 0)]);
        b.record("e", Enum, false, 2, 4, &[0, 0, 0, 1]);
        b.refer(Fwd, "f", 0);
        b.refer(Typedef, "t", int);
        b.refer(Volatile, "", int);
        b.refer(Const, "", int);
        b.refer(Restrict, "", int);
        let proto = b.func_proto(&[int, int]);
        b.refer(Func, "fn", proto);
        let var = b.record("v", Var, false, 0, int, &[1]);
        b.record(".data", Datasec, false, 2, 8, &[var, 0, 4, var, 4, 4]);
        b.record("double", Float, false, 0, 8, &[]);
        b.record("tag", DeclTag, false, 0, s, &[u32::MAX]);
        b.refer(TypeTag, "rcu", int);
        b.record("e64", Enum64, true, 2, 8, &[0, 1, 0, 0, 2, 0]);
        b.composite(Struct, "after", 8, false, &[("last", int, 32)]);
        let btf = Btf::parse(&b.build()).expect("every kind parses");
        assert_eq!(btf.starts.len(), 20);
        assert_eq!(btf.member_offset("after", "last"), Some(4));
    }

    #[test]
    fn reference_cycles_end() {
        use Kind::*;
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let loop_a = b.refer(Typedef, "loop_a", int + 2);
        b.refer(Typedef, "btf_trace_loop", loop_a);
        let selfish = b.next_id;
        b.composite(
            Struct,
            "selfish",
            8,
            false,
            &[("", selfish, 0), ("", loop_a, 0), ("x", int, 32)],
        );
        // 30 levels of two anonymous members each: 2^30 paths unless searched types are skipped.
        let mut level = b.composite(Struct, "", 4, false, &[("leaf", int, 0)]);
        for _ in 0..30 {
            level = b.composite(Struct, "", 4, false, &[("", level, 0), ("", level, 0)]);
        }
        b.composite(Struct, "fan", 4, false, &[("", level, 0)]);
        let btf = Btf::parse(&b.build()).expect("cyclic blob parses");
        assert_eq!(btf.tracepoint_arg_count("loop"), None);
        assert_eq!(btf.member_offset("selfish", "x"), Some(4));
        assert_eq!(btf.member_offset("selfish", "y"), None);
        assert_eq!(btf.member_offset("fan", "absent"), None);
        assert_eq!(btf.member_offset("fan", "leaf"), Some(0));
    }

    #[test]
    fn malformed_headers_and_sections_are_errors() {
        let good = fixture();
        let with = |at: usize, bytes: &[u8]| {
            let mut blob = good.clone();
            blob[at..at + bytes.len()].copy_from_slice(bytes);
            blob
        };
        assert!(parse_error(&[]).contains("too short"));
        assert!(parse_error(&with(0, &0x1234u16.to_ne_bytes())).contains("bad BTF magic"));
        assert!(parse_error(&with(0, &MAGIC.swap_bytes().to_ne_bytes())).contains("byte order"));
        assert!(parse_error(&with(2, &[2])).contains("version 2"));
        assert!(parse_error(&good[..10]).contains("shorter than the 24-byte"));
        assert!(parse_error(&with(4, &8u32.to_ne_bytes())).contains("header length 8"));
        assert!(parse_error(&with(8, &u32::MAX.to_ne_bytes())).contains("type section"));
        assert!(parse_error(&good[..good.len() - 1]).contains("string section"));
        assert!(parse_error(&with(good.len() - 1, b"x")).contains("NUL"));
        // The first record's info word: kind 20 does not exist.
        let unknown = with(HEADER_LEN + 4, &(20u32 << 24).to_ne_bytes());
        assert!(parse_error(&unknown)
            .contains("type id 1 at byte 0 of the type section: unknown kind 20"));
    }

    #[test]
    fn record_running_past_the_type_section_is_an_error() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.composite(Kind::Struct, "s", 4, false, &[("a", int, 0)]);
        let mut blob = b.build();
        // Claim two members where the section holds one.
        let info = (Kind::Struct as u32) << 24 | 2;
        let at = HEADER_LEN + 16 + 4;
        blob[at..at + 4].copy_from_slice(&info.to_ne_bytes());
        let message = parse_error(&blob);
        assert!(message.contains("type id 2"), "{message}");
        assert!(
            message.contains("runs past the end of the type section"),
            "{message}"
        );
    }

    #[test]
    fn missing_file_names_path_and_config() {
        let path = Path::new("/nonexistent/meshmark/vmlinux");
        let message = Btf::from_file(path)
            .err()
            .expect("no such file")
            .to_string();
        assert!(
            message.contains("/nonexistent/meshmark/vmlinux"),
            "{message}"
        );
        assert!(message.contains("CONFIG_DEBUG_INFO_BTF=y"), "{message}");
    }

    /// Runs every query on whatever parses, so malformed blobs reach the lookup code too.
    fn exercise(bytes: &[u8]) {
        if let Ok(btf) = Btf::parse(bytes) {
            for name in ["sock_like", "flags", "a", "b"] {
                for member in ["daddr", "family", "reuse", "a", "b"] {
                    btf.member_offset(name, member);
                }
            }
            for tracepoint in ["two_args", "a", "b"] {
                btf.tracepoint_arg_count(tracepoint);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
            exercise(&bytes);
        }

        #[test]
        fn mutated_fixture_never_panics(
            edits in vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = fixture();
            for (at, value) in edits {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            exercise(&bytes);
        }

        /// Well-formed records of random kinds whose references and names point anywhere,
        /// cycles included: they must parse, and lookups must end.
        #[test]
        fn random_type_graphs_parse_and_lookups_end(
            records in vec(
                (1u32..=19, 0usize..4, any::<bool>(), 0usize..4, 0u32..12, vec(0u32..12, 0..12)),
                0..24,
            ),
        ) {
            let mut b = Builder::new();
            for (raw_kind, vlen, kind_flag, name, size_or_type, mut words) in records {
                let kind = Kind::from_raw(raw_kind).expect("kinds 1..=19 exist");
                words.resize(kind.trailing_len(vlen) / 4, 0);
                let name = ["", "a", "b", "btf_trace_a"][name];
                b.record(name, kind, kind_flag, vlen, size_or_type, &words);
            }
            prop_assert!(Btf::parse(&b.build()).is_ok());
            exercise(&b.build());
        }
    }

    /// The running kernel's BTF; None, loudly, when absent unless MESHMARK_REQUIRE_BPF=1.
    fn vmlinux() -> Option<Btf> {
        if !Path::new(SYS_FS_PATH).exists() {
            let required = std::env::var("MESHMARK_REQUIRE_BPF").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{SYS_FS_PATH} is absent and MESHMARK_REQUIRE_BPF=1"
            );
            eprintln!("!!! SKIPPED: {SYS_FS_PATH} is absent (set MESHMARK_REQUIRE_BPF=1 to fail)");
            return None;
        }
        Some(Btf::from_sys_fs().expect("the running kernel's BTF parses"))
    }

    /// Where a kernel puts the fields and how many arguments its tracepoints take: the things
    /// that differ between kernels, so tests state them instead of reading the host's.
    #[derive(Clone, Debug)]
    struct KernelLayout {
        /// Byte offset of `__sk_common` in `struct sock`.
        sk_common: u32,
        /// Byte offsets in `struct sock_common`; daddr and rcv_saddr sit in an anonymous
        /// struct inside an anonymous union, as in the kernel.
        skc_addrpair: u32,
        skc_family: u32,
        /// Bit offset of the 4-bit `skc_reuse` bitfield; not on a byte boundary means None.
        skc_reuse_bits: u32,
        skc_v6_daddr: u32,
        skc_v6_rcv_saddr: u32,
        task_pid: u32,
        task_tgid: u32,
        task_se: u32,
        se_sum_exec_runtime: u32,
        /// Tracepoint arguments after the context: sched_process_exit had 1 (the task) before
        /// gaining `group_dead`.
        sched_switch_args: usize,
        sched_process_exit_args: usize,
    }

    /// The kernel types the agent looks up, shaped as vmlinux BTF shapes them, at `layout`.
    fn kernel_like(layout: &KernelLayout) -> Vec<u8> {
        use Kind::*;
        let mut b = Builder::new();
        let u8_ = b.int("unsigned char", 1);
        let u16_ = b.int("short unsigned int", 2);
        let int = b.int("int", 4);
        let u32_ = b.int("unsigned int", 4);
        let u64_ = b.int("long long unsigned int", 8);
        let be32 = b.refer(Typedef, "__be32", u32_);
        let pid_t = b.refer(Typedef, "pid_t", int);
        let in6 = b.composite(Struct, "in6_addr", 16, false, &[("in6_u", u32_, 0)]);
        let pair = b.composite(
            Struct,
            "",
            8,
            false,
            &[("skc_daddr", be32, 0), ("skc_rcv_saddr", be32, 32)],
        );
        let addr_union = b.composite(
            Union,
            "",
            8,
            false,
            &[("skc_addrpair", u64_, 0), ("", pair, 0)],
        );
        let bits = |bytes: u32| bytes * 8;
        let sock_common = b.composite(
            Struct,
            "sock_common",
            136,
            true,
            &[
                ("", addr_union, bits(layout.skc_addrpair)),
                ("skc_family", u16_, 16 << 24 | bits(layout.skc_family)),
                ("skc_reuse", u8_, 4 << 24 | layout.skc_reuse_bits),
                ("skc_v6_daddr", in6, bits(layout.skc_v6_daddr)),
                ("skc_v6_rcv_saddr", in6, bits(layout.skc_v6_rcv_saddr)),
            ],
        );
        b.composite(
            Struct,
            "sock",
            760,
            false,
            &[("__sk_common", sock_common, bits(layout.sk_common))],
        );
        let se = b.composite(
            Struct,
            "sched_entity",
            256,
            false,
            &[("sum_exec_runtime", u64_, bits(layout.se_sum_exec_runtime))],
        );
        let task = b.composite(
            Struct,
            "task_struct",
            9000,
            false,
            &[
                ("se", se, bits(layout.task_se)),
                ("pid", pid_t, bits(layout.task_pid)),
                ("tgid", pid_t, bits(layout.task_tgid)),
            ],
        );
        let ctx = b.refer(Ptr, "", 0);
        let task_ptr = b.refer(Ptr, "", task);
        let args = |n: usize| {
            std::iter::once(ctx)
                .chain(std::iter::repeat_n(task_ptr, n))
                .collect::<Vec<_>>()
        };
        b.tracepoint("sched_switch", &args(layout.sched_switch_args));
        b.tracepoint("sched_process_exit", &args(layout.sched_process_exit_args));
        b.build()
    }

    /// sock_common as `bpftool btf dump` showed it on a 6.18 x86_64 kernel (skc_reuse at bit
    /// 152, so not addressable as a byte); the task_struct numbers are merely plausible.
    const LAYOUT_6_18: KernelLayout = KernelLayout {
        sk_common: 0,
        skc_addrpair: 0,
        skc_family: 16,
        skc_reuse_bits: 152,
        skc_v6_daddr: 56,
        skc_v6_rcv_saddr: 72,
        task_pid: 2464,
        task_tgid: 2468,
        task_se: 128,
        se_sum_exec_runtime: 72,
        sched_switch_args: 4,
        sched_process_exit_args: 2,
    };

    /// Asserts that every lookup the agent makes answers what `layout` put there.
    fn assert_layout_found(layout: &KernelLayout) {
        let btf = Btf::parse(&kernel_like(layout)).expect("kernel-like BTF parses");
        let field = |ty, member| btf.member_offset(ty, member);
        assert_eq!(field("sock", "__sk_common"), Some(layout.sk_common));
        assert_eq!(field("sock_common", "skc_daddr"), Some(layout.skc_addrpair));
        assert_eq!(
            field("sock_common", "skc_rcv_saddr"),
            Some(layout.skc_addrpair + 4)
        );
        assert_eq!(field("sock_common", "skc_family"), Some(layout.skc_family));
        let reuse = layout
            .skc_reuse_bits
            .is_multiple_of(8)
            .then_some(layout.skc_reuse_bits / 8);
        assert_eq!(field("sock_common", "skc_reuse"), reuse);
        assert_eq!(
            field("sock_common", "skc_v6_daddr"),
            Some(layout.skc_v6_daddr)
        );
        assert_eq!(
            field("sock_common", "skc_v6_rcv_saddr"),
            Some(layout.skc_v6_rcv_saddr)
        );
        assert_eq!(field("task_struct", "pid"), Some(layout.task_pid));
        assert_eq!(field("task_struct", "tgid"), Some(layout.task_tgid));
        assert_eq!(field("task_struct", "se"), Some(layout.task_se));
        assert_eq!(
            field("sched_entity", "sum_exec_runtime"),
            Some(layout.se_sum_exec_runtime)
        );
        assert_eq!(
            btf.tracepoint_arg_count("sched_switch"),
            Some(layout.sched_switch_args)
        );
        assert_eq!(
            btf.tracepoint_arg_count("sched_process_exit"),
            Some(layout.sched_process_exit_args)
        );
        assert_eq!(btf.tracepoint_arg_count("meshmark_made_up"), None);
    }

    #[test]
    fn kernel_like_fixture_gives_its_offsets_and_arities() {
        assert_layout_found(&LAYOUT_6_18);
    }

    #[test]
    fn an_older_kernel_shape_is_read_as_built() {
        // Another layout, the bitfield on a byte boundary, and sched_process_exit with only
        // the task, as before group_dead was added.
        assert_layout_found(&KernelLayout {
            sk_common: 8,
            skc_reuse_bits: 144,
            task_pid: 1192,
            task_tgid: 1196,
            sched_process_exit_args: 1,
            ..LAYOUT_6_18
        });
    }

    proptest! {
        /// Any layout a kernel could have (byte-aligned, non-overlapping start fields) is read
        /// back exactly, whatever order the fields are in.
        #[test]
        fn any_kernel_layout_is_read_back(
            sk_common in 0u32..4096,
            skc_addrpair in 0u32..64,
            skc_family in 8u32..128,
            skc_reuse_bits in 0u32..1024,
            skc_v6_daddr in 0u32..128,
            skc_v6_rcv_saddr in 0u32..128,
            task_pid in 0u32..16384,
            task_tgid in 0u32..16384,
            task_se in 0u32..16384,
            se_sum_exec_runtime in 0u32..256,
            sched_switch_args in 0usize..8,
            sched_process_exit_args in 0usize..8,
        ) {
            assert_layout_found(&KernelLayout {
                sk_common,
                skc_addrpair,
                skc_family,
                skc_reuse_bits,
                skc_v6_daddr,
                skc_v6_rcv_saddr,
                task_pid,
                task_tgid,
                task_se,
                se_sum_exec_runtime,
                sched_switch_args,
                sched_process_exit_args,
            });
        }
    }

    /// Smoke test on the running kernel: its BTF parses and has every field and tracepoint the
    /// agent looks up. Values are not checked; they are this kernel's, and the fixtures above
    /// check that lookups return what the BTF says.
    #[test]
    fn vmlinux_parses_and_has_what_the_agent_needs() {
        let Some(btf) = vmlinux() else { return };
        for (ty, member) in [
            ("sock", "__sk_common"),
            ("sock_common", "skc_daddr"),
            ("sock_common", "skc_rcv_saddr"),
            ("sock_common", "skc_family"),
            ("sock_common", "skc_v6_daddr"),
            ("sock_common", "skc_v6_rcv_saddr"),
            ("task_struct", "pid"),
            ("task_struct", "tgid"),
            ("task_struct", "se"),
            ("sched_entity", "sum_exec_runtime"),
        ] {
            assert!(
                btf.member_offset(ty, member).is_some(),
                "{ty}.{member} missing"
            );
        }
        for tracepoint in [
            "sched_switch",
            "sched_process_exit",
            "sys_enter",
            "sys_exit",
        ] {
            assert!(
                btf.tracepoint_arg_count(tracepoint).is_some(),
                "{tracepoint} missing"
            );
        }
        assert_eq!(btf.tracepoint_arg_count("meshmark_made_up"), None);
    }
}
