//! The table of nodes an ambiguous target lists (and the picker's rows): ID, name, IP,
//! ping status, last seen.

use std::time::SystemTime;

use crate::aws::NodeInfo;

use super::Spec;

/// The listing for an ambiguous target: ID, name, IP, ping status, last seen.
pub(super) fn table(spec: &Spec, nodes: &[NodeInfo]) -> String {
    let now = SystemTime::now();
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let tag_name = match spec {
        Spec::Name(n) => Some(n.as_str()),
        Spec::Tag { key, value } if key == "Name" => Some(value.as_str()),
        _ => None,
    };
    let rows: Vec<[String; 5]> = nodes
        .iter()
        .map(|n| {
            let name = (n.name.as_deref().or(tag_name))
                .or(n.computer_name.as_deref())
                .unwrap_or("-");
            let seen = match n.last_ping {
                Some(t) if !n.is_online() => {
                    format!(
                        "last seen {}",
                        crate::aws::ago(now_secs.saturating_sub(t).max(0) as u64)
                    )
                }
                _ => String::new(),
            };
            [
                n.id.clone(),
                name.to_owned(),
                n.ip_address.clone().unwrap_or_else(|| "-".to_owned()),
                n.ping_status.clone(),
                seen,
            ]
            // From AWS or the instance (a Name tag, a computer name): text, not controls.
            .map(|cell| crate::text::shown_max(&cell, 256).into_owned())
        })
        .collect();
    let header = ["ID", "NAME", "IP", "STATUS", ""].map(str::to_owned);
    let all: Vec<&[String; 5]> = std::iter::once(&header).chain(rows.iter()).collect();
    let width = |col: usize| {
        all.iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..4).map(width).collect();
    all.iter()
        .map(|r| {
            let mut line = String::from("  ");
            for (c, w) in widths.iter().enumerate() {
                line.push_str(&format!("{:<w$}  ", r[c], w = w));
            }
            line.push_str(&r[4]);
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
