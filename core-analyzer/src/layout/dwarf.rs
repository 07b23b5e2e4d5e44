//! Struct layouts from the binary's own DWARF (authoritative for that build).
use super::{Layout, StructLayout, WANTED};
use crate::elf::exe::Binary;
use anyhow::Result;
use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::Object;
use std::collections::BTreeMap;

/// `None` when the binary has no DWARF (stripped with `-w`).
pub fn layout_from_dwarf(bin: &Binary, go_version: &str) -> Result<Option<Layout>> {
    // Go's linker emits every Go type in the "runtime" compile unit
    // (verified 1.21-1.27): the other units (every package, the C objects)
    // are skipped unread, which matters for big binaries.
    let Some(structs) = structs_from_dwarf(bin, WANTED, &super::wanted_unit)? else {
        return Ok(None);
    };
    Ok(Some(Layout {
        go: go_version.to_string(),
        source: "DWARF".into(),
        structs,
    }))
}

/// Sizes and member offsets of the `wanted` structs (by name, the first
/// definition found) in the compile units whose name `unit` accepts; `None`
/// without DWARF. C libraries compiled into a binary (SQLite's amalgamation)
/// are read the same way.
pub fn structs_from_dwarf(
    bin: &Binary,
    wanted: &[(&str, &[&str])],
    unit: &dyn Fn(&[u8]) -> bool,
) -> Result<Option<BTreeMap<String, StructLayout>>> {
    let obj = bin.object();
    if obj.section_by_name(".debug_info").is_none() {
        return Ok(None);
    }
    // Struct layouts need the entries (and what gimli reads to open a unit),
    // not locations or frames.
    let load = |id: gimli::SectionId| -> Result<std::sync::Arc<[u8]>> {
        use gimli::SectionId::*;
        Ok(match id {
            DebugLoc | DebugLocLists | DebugFrame | DebugPubNames | DebugPubTypes
            | DebugMacinfo | DebugMacro => std::sync::Arc::from(&[][..]),
            _ => bin.section_bytes(id.name()),
        })
    };
    let owned = gimli::DwarfSections::load(load)?;
    let dwarf = owned.borrow(|s| EndianSlice::new(s, LittleEndian));
    let mut structs = BTreeMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit_ = dwarf.unit(header)?;
        let mut tree = unit_.entries_tree(None)?;
        let root = tree.root()?;
        let cu_name = root
            .entry()
            .attr_value(gimli::DW_AT_name)
            .and_then(|v| dwarf.attr_string(&unit_, v).ok());
        if !cu_name.is_some_and(|n| unit(n.slice())) {
            continue;
        }
        let mut children = root.children();
        while let Some(child) = children.next()? {
            let e = child.entry();
            if e.tag() != gimli::DW_TAG_structure_type {
                continue;
            }
            let Some(name) = e.attr_value(gimli::DW_AT_name) else {
                continue;
            };
            let name = dwarf
                .attr_string(&unit_, name)?
                .to_string_lossy()
                .into_owned();
            let Some((_, fields)) = wanted.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            // A declaration (no size) is not the definition.
            let size = match e.attr_value(gimli::DW_AT_byte_size) {
                Some(AttributeValue::Udata(v)) => v,
                Some(v) => v.udata_value().unwrap_or(0),
                None => continue,
            };
            if structs.contains_key(&name) {
                continue;
            }
            let mut sl = StructLayout {
                size,
                ..Default::default()
            };
            let mut members = child.children();
            while let Some(m) = members.next()? {
                let me = m.entry();
                if me.tag() != gimli::DW_TAG_member {
                    continue;
                }
                let (Some(mn), Some(loc)) = (
                    me.attr_value(gimli::DW_AT_name),
                    me.attr_value(gimli::DW_AT_data_member_location),
                ) else {
                    continue;
                };
                let mn = dwarf
                    .attr_string(&unit_, mn)?
                    .to_string_lossy()
                    .into_owned();
                // `["*"]` asks for every member, with its type's name.
                let all = fields == &["*"];
                if all {
                    if let Some(t) = member_type(&dwarf, &unit_, me) {
                        sl.types.insert(mn.clone(), t);
                    }
                }
                if let (true, Some(off)) = (all || fields.contains(&mn.as_str()), loc.udata_value())
                {
                    sl.fields.insert(mn, off);
                }
            }
            structs.insert(name, sl);
        }
        if structs.len() == wanted.len() {
            break;
        }
    }
    Ok(Some(structs))
}

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// The name of a member's type (`sync.Mutex`, `*main.Store`).
fn member_type(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    member: &gimli::DebuggingInformationEntry<Reader>,
) -> Option<String> {
    // Go's linker refers to types by their offset in .debug_info.
    let off = match member.attr_value(gimli::DW_AT_type)? {
        AttributeValue::UnitRef(off) => off,
        AttributeValue::DebugInfoRef(off) => off.to_unit_offset(&unit.header)?,
        _ => return None,
    };
    let t = unit.entry(off).ok()?;
    let name = dwarf
        .attr_string(unit, t.attr_value(gimli::DW_AT_name)?)
        .ok()?;
    Some(name.to_string_lossy().into_owned())
}
