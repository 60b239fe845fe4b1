//! The interactive picker: several matches (or no target at all) on a terminal become a
//! filterable list on stderr, and the person picks one node.

use crate::aws::NodeInfo;
use crate::target::TargetError;

use super::table::table;
use super::{Resolver, Spec};

impl Resolver<'_> {
    /// A filterable list on the terminal (stderr); Esc or Ctrl-C cancels.
    pub(super) async fn pick(
        &self,
        spec: &Spec,
        matches: Vec<NodeInfo>,
    ) -> Result<NodeInfo, TargetError> {
        // Name tags make the rows recognisable; without permission, host names do.
        let mut shown = matches.clone();
        if let Some(names) = match &self.tagging {
            Some(t) => t.instance_names().await.ok(),
            None => None,
        } {
            for n in shown.iter_mut().filter(|n| n.name.is_none()) {
                n.name = names.get(&n.id).cloned();
            }
        }
        let listing = table(spec, &shown);
        let mut lines = listing.lines().map(|l| l.trim_start().to_owned());
        let header = lines.next().unwrap_or_default();
        let items: Vec<String> = lines.collect();
        let prompt = match spec {
            Spec::Pick => format!("{} online managed nodes in {}", matches.len(), self.region),
            _ => format!(
                "{:?} matches {} managed nodes in {}",
                spec.to_string(),
                matches.len(),
                self.region
            ),
        };
        let prompt = format!("{prompt}; type to filter, Enter picks, Esc cancels\n  {header}");
        let chosen = tokio::task::spawn_blocking(move || {
            dialoguer::FuzzySelect::with_theme(&dialoguer::theme::SimpleTheme)
                .with_prompt(prompt)
                .items(&items)
                .default(0)
                .max_length(15)
                .interact_on_opt(&dialoguer::console::Term::stderr())
        })
        .await
        .map_err(|e| TargetError::Internal(format!("the picker failed: {e}")))?;
        match chosen {
            Ok(Some(i)) => matches
                .into_iter()
                .nth(i)
                .ok_or_else(|| TargetError::Internal("the picker returned no node".to_owned())),
            Ok(None) => Err(TargetError::Ambiguous(
                "no node picked; name one (an instance ID, Name tag, …) or run `sallyport ls`"
                    .to_owned(),
            )),
            Err(dialoguer::Error::IO(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                Err(TargetError::Interrupted("interrupted".to_owned()))
            }
            Err(e) => Err(TargetError::LocalIo(format!(
                "cannot show the node picker on this terminal: {e}"
            ))),
        }
    }
}
