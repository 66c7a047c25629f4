//! What happens to a call: the ordered steps of a plan.

use std::sync::Arc;
use std::time::Duration;

/// What happens to a call: its steps run in order, and when one cannot
/// serve the call (nobody answers, the voicemail box is full) the next one
/// runs. The last step always ends the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Action>,
    /// What staff phones show for calls by this rule ("Courier"); None:
    /// the line's label.
    pub label: Option<String>,
}

impl Plan {
    pub fn single(action: Action) -> Plan {
        Plan {
            steps: vec![action],
            label: None,
        }
    }

    /// The phones of the plan's first ring step (for `phones_busy`).
    pub fn ring_phones(&self) -> &[String] {
        self.steps
            .iter()
            .find_map(|s| match s {
                Action::Ring(r) => Some(r.phones.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// The steps as the owner would say them: "ring desk (30 s), then voicemail".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.steps.iter().map(Action::describe).collect();
        parts.join(", then ")
    }

    /// One word per step for the call log ("ring>voicemail").
    pub fn kind(&self) -> String {
        let parts: Vec<&str> = self.steps.iter().map(Action::kind).collect();
        parts.join(">")
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer (after `answer_after` of ringing), play the prompt `repeat`
    /// times, hang up.
    Announce {
        prompt: PromptRef,
        repeat: u32,
        answer_after: Duration,
    },
    /// Ring staff phones; the first to answer is bridged to the caller.
    Ring(RingStep),
    /// Take a message.
    Voicemail(VoicemailStep),
    /// Refuse the call with this SIP status (e.g. 486, 603 for spam lists).
    Reject { status: u16 },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Announce { .. } => "announce",
            Action::Ring(_) => "ring",
            Action::Voicemail(_) => "voicemail",
            Action::Reject { .. } => "reject",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Action::Announce {
                prompt,
                repeat,
                answer_after,
            } => {
                let mut text = String::new();
                if !answer_after.is_zero() {
                    let secs = answer_after.as_secs_f64();
                    let secs = if secs.fract() == 0.0 {
                        format!("{secs:.0}")
                    } else {
                        format!("{secs:.1}")
                    };
                    text.push_str(&format!("ring {secs} s, then "));
                }
                text.push_str(&format!(
                    "announce {} ({:.1} s)",
                    prompt.name,
                    prompt.duration.as_secs_f64()
                ));
                if *repeat > 1 {
                    text.push_str(&format!(" x{repeat}"));
                }
                text
            }
            Action::Ring(r) => format!(
                "ring {} {} ({} s{})",
                r.phones.join(if r.order == RingOrder::Simultaneous {
                    " + "
                } else {
                    " > "
                }),
                if r.order == RingOrder::Simultaneous {
                    "together"
                } else {
                    "in turn"
                },
                r.timeout.as_secs(),
                match &r.ringback {
                    Ringback::Ringing => String::new(),
                    Ringback::Tone(country) => format!(", ringback tone {country}"),
                    Ringback::Prompt(p) => format!(", ringback {}", p.name),
                }
            ),
            Action::Voicemail(v) => match &v.greeting {
                Some(g) => format!("voicemail (greeting {})", g.name),
                None => "voicemail".into(),
            },
            Action::Reject { status } => format!("reject {status}"),
        }
    }
}

/// Ring staff phones (by their `[phones.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RingStep {
    pub phones: Vec<String>,
    pub order: RingOrder,
    /// The whole step gives up after this long.
    pub timeout: Duration,
    /// In turn: how long each phone rings before the next.
    pub per_phone: Duration,
    /// What the caller hears meanwhile.
    pub ringback: Ringback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingOrder {
    Simultaneous,
    Sequential,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ringback {
    /// 180 Ringing: the caller's own network plays its ringing tone.
    Ringing,
    /// 183 with early media: a ringback tone of this country (e.g. "jp").
    Tone(String),
    /// 183 with early media: this prompt, looped.
    Prompt(PromptRef),
}

/// Take a message in this line's box.
#[derive(Debug, Clone, PartialEq)]
pub struct VoicemailStep {
    pub greeting: Option<PromptRef>,
    pub max_length: Duration,
    /// Shorter messages are not kept (still logged as calls).
    pub min_length: Duration,
    /// Recording ends after this much silence.
    pub silence: Duration,
    /// Played when the maximum length is reached, before hanging up.
    pub goodbye: Option<PromptRef>,
}

/// A prompt by the name the owner wrote (a file in the prompts folder). The
/// policy only names it; the audio lives in media's prompt library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub name: Arc<str>,
    /// How long it plays once, for `check` and dry runs.
    pub duration: Duration,
}
