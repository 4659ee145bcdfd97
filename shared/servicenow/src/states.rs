//! The one place where certops's ticket states meet ServiceNow's state values, per table.
//!
//! Defaults are the base system's choices: incident New 1 / In Progress 2 / On Hold 3 /
//! Resolved 6 / Closed 7 / Canceled 8; change New −5 / Assess −4 / Authorize −3 /
//! Scheduled −2 / Implement −1 / Review 0 / Closed 3 / Canceled 4. Instances that renumber
//! their choices override any of them under `[servicenow.states.incident]` or
//! `[servicenow.states.change_request]`.
//!
//! certops's `Mitigating` has no ServiceNow state: it becomes In Progress (incident) or
//! Implement (change) plus a work note saying why, and is read back from that note's marker.

use certops_core::ports::TicketState;
use serde::{Deserialize, Serialize};

/// Incident state values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentStates {
    /// New.
    pub new: i32,
    /// In Progress (certops: Implement, Scheduled, Mitigating).
    pub in_progress: i32,
    /// On Hold (certops: Assess — blocked or not approved, humans decide).
    pub on_hold: i32,
    /// Resolved.
    pub resolved: i32,
    /// Closed.
    pub closed: i32,
    /// Canceled.
    pub canceled: i32,
}

impl Default for IncidentStates {
    fn default() -> Self {
        IncidentStates {
            new: 1,
            in_progress: 2,
            on_hold: 3,
            resolved: 6,
            closed: 7,
            canceled: 8,
        }
    }
}

/// Change request state values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeStates {
    /// New.
    pub new: i32,
    /// Assess.
    pub assess: i32,
    /// Authorize (waiting for approval).
    pub authorize: i32,
    /// Scheduled.
    pub scheduled: i32,
    /// Implement (certops: Implement, Mitigating).
    pub implement: i32,
    /// Review (certops: Resolved).
    pub review: i32,
    /// Closed.
    pub closed: i32,
    /// Canceled.
    pub canceled: i32,
}

impl Default for ChangeStates {
    fn default() -> Self {
        ChangeStates {
            new: -5,
            assess: -4,
            authorize: -3,
            scheduled: -2,
            implement: -1,
            review: 0,
            closed: 3,
            canceled: 4,
        }
    }
}

/// Both tables' state values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateMap {
    /// `incident`.
    pub incident: IncidentStates,
    /// `change_request`.
    pub change_request: ChangeStates,
}

impl StateMap {
    /// The incident state value for a certops state.
    pub fn incident_value(&self, s: TicketState) -> i32 {
        let i = &self.incident;
        match s {
            TicketState::New => i.new,
            TicketState::Assess => i.on_hold,
            TicketState::Scheduled | TicketState::Implement | TicketState::Mitigating => {
                i.in_progress
            }
            TicketState::Resolved => i.resolved,
            TicketState::Closed => i.closed,
            TicketState::Canceled => i.canceled,
        }
    }

    /// The certops state an incident value reads as (`None`: not a known value).
    pub fn incident_state(&self, v: i32) -> Option<TicketState> {
        let i = &self.incident;
        Some(match v {
            v if v == i.new => TicketState::New,
            v if v == i.in_progress => TicketState::Implement,
            v if v == i.on_hold => TicketState::Assess,
            v if v == i.resolved => TicketState::Resolved,
            v if v == i.closed => TicketState::Closed,
            v if v == i.canceled => TicketState::Canceled,
            _ => return None,
        })
    }

    /// The change state value for a certops state.
    pub fn change_value(&self, s: TicketState) -> i32 {
        let c = &self.change_request;
        match s {
            TicketState::New => c.new,
            TicketState::Assess => c.assess,
            TicketState::Scheduled => c.scheduled,
            TicketState::Implement | TicketState::Mitigating => c.implement,
            TicketState::Resolved => c.review,
            TicketState::Closed => c.closed,
            TicketState::Canceled => c.canceled,
        }
    }

    /// The certops state a change value reads as (Authorize reads as Assess: awaiting approval).
    pub fn change_state(&self, v: i32) -> Option<TicketState> {
        let c = &self.change_request;
        Some(match v {
            v if v == c.new => TicketState::New,
            v if v == c.assess || v == c.authorize => TicketState::Assess,
            v if v == c.scheduled => TicketState::Scheduled,
            v if v == c.implement => TicketState::Implement,
            v if v == c.review => TicketState::Resolved,
            v if v == c.closed => TicketState::Closed,
            v if v == c.canceled => TicketState::Canceled,
            _ => return None,
        })
    }

    /// The change state value for a certops state on a change of `change_type` (`normal`,
    /// `emergency`, `standard`), whose state models skip states: an emergency change has no
    /// Assess (it waits for the ECAB in Authorize); a standard change is pre-approved and has
    /// neither (`None`: leave the state as it is).
    pub fn change_value_for(&self, change_type: &str, s: TicketState) -> Option<i32> {
        let c = &self.change_request;
        let v = self.change_value(s);
        match change_type {
            "standard" if v == c.assess || v == c.authorize => None,
            "emergency" if v == c.assess => Some(c.authorize),
            _ => Some(v),
        }
    }

    /// A change's forward path, in order (Canceled is off the path: reachable from any open state).
    pub fn change_path(&self) -> [i32; 7] {
        let c = &self.change_request;
        [
            c.new,
            c.assess,
            c.authorize,
            c.scheduled,
            c.implement,
            c.review,
            c.closed,
        ]
    }

    /// Where a change state sits on the forward path.
    pub fn change_rank(&self, v: i32) -> Option<usize> {
        self.change_path().iter().position(|x| *x == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_certops_writes_reads_back_as_itself_or_its_servicenow_equivalent() {
        let m = StateMap::default();
        for s in [
            TicketState::New,
            TicketState::Assess,
            TicketState::Scheduled,
            TicketState::Implement,
            TicketState::Resolved,
            TicketState::Closed,
            TicketState::Canceled,
        ] {
            assert_eq!(m.change_state(m.change_value(s)), Some(s));
        }
        for s in [
            TicketState::New,
            TicketState::Assess,
            TicketState::Implement,
            TicketState::Resolved,
            TicketState::Closed,
            TicketState::Canceled,
        ] {
            assert_eq!(m.incident_state(m.incident_value(s)), Some(s));
        }
        assert_eq!(m.incident_value(TicketState::Mitigating), 2);
        assert_eq!(m.change_value(TicketState::Mitigating), -1);
        assert_eq!(m.change_state(-3), Some(TicketState::Assess));
        assert_eq!(m.change_rank(-2), Some(3));
        assert_eq!(
            m.change_value_for("emergency", TicketState::Assess),
            Some(-3)
        );
        assert_eq!(m.change_value_for("standard", TicketState::Assess), None);
        assert_eq!(m.change_value_for("standard", TicketState::Closed), Some(3));
        assert_eq!(m.change_value_for("normal", TicketState::Assess), Some(-4));
    }

    #[test]
    fn an_instance_with_renumbered_choices_overrides_them() {
        let m: StateMap =
            toml::from_str("[incident]\non_hold = 4\n[change_request]\nreview = 1\n").unwrap();
        assert_eq!(m.incident_value(TicketState::Assess), 4);
        assert_eq!(m.incident.new, 1);
        assert_eq!(m.change_state(1), Some(TicketState::Resolved));
    }
}
