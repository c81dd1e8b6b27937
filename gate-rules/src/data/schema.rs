//! Schema checks of each example: empty turns, role order, unknown roles, a missing answer.

use super::example::{Example, Role};

/// What is wrong with the shape of one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaProblem {
    EmptyTurn { turn: usize },
    RoleOrder { turn: usize },
    UnknownRole { turn: usize },
    MissingAssistant,
}

/// The problems of one example, in turn order. `{text}` examples have no roles to check.
pub fn check(example: &Example) -> Vec<SchemaProblem> {
    let mut problems: Vec<SchemaProblem> = example
        .turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.content.trim().is_empty())
        .map(|(turn, _)| SchemaProblem::EmptyTurn { turn })
        .collect();
    if example.turns.iter().any(|t| t.role == Role::Text) {
        return problems;
    }
    let unknown: Vec<SchemaProblem> = example
        .turns
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.role, Role::Other(_)))
        .map(|(turn, _)| SchemaProblem::UnknownRole { turn })
        .collect();
    if unknown.is_empty() {
        problems.extend(role_order(example));
    }
    problems.extend(unknown);
    let last = example.turns.iter().rev().find(|t| t.role != Role::System);
    if last.is_none_or(|t| t.role != Role::Assistant) {
        problems.push(SchemaProblem::MissingAssistant);
    }
    problems
}

/// The first turn out of order: a system turn after the start, or a chat that does not
/// alternate user, assistant, user, ... from its first non-system turn.
fn role_order(example: &Example) -> Option<SchemaProblem> {
    let mut expect_user = true;
    for (turn, t) in example.turns.iter().enumerate() {
        let ok = match t.role {
            Role::System => turn == 0,
            Role::User => expect_user,
            Role::Assistant => !expect_user,
            Role::Text | Role::Other(_) => true,
        };
        if !ok {
            return Some(SchemaProblem::RoleOrder { turn });
        }
        if t.role != Role::System {
            expect_user = !expect_user;
        }
    }
    None
}

impl SchemaProblem {
    pub fn describe(&self, example: &Example) -> String {
        let role = |turn: usize| example.turns.get(turn).map_or("?", |t| t.role.as_str()).to_owned();
        match *self {
            SchemaProblem::EmptyTurn { turn } => format!("turn {turn} ({}) is empty", role(turn)),
            SchemaProblem::RoleOrder { turn } => format!("turn {turn} ({}) is out of order", role(turn)),
            SchemaProblem::UnknownRole { turn } => format!("turn {turn} has unknown role `{}`", role(turn)),
            SchemaProblem::MissingAssistant => "no assistant turn answers the last user turn".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::example::{Position, Turn};

    fn example(turns: &[(&str, &str)]) -> Example {
        let role = |r: &str| match r {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "text" => Role::Text,
            other => Role::Other(other.to_owned()),
        };
        Example {
            position: Position::Line(1),
            turns: turns.iter().map(|(r, c)| Turn { role: role(r), content: (*c).to_owned() }).collect(),
        }
    }

    #[test]
    fn each_schema_problem_is_found_and_only_it() {
        use SchemaProblem::*;
        type Row<'a> = (&'a [(&'a str, &'a str)], &'a [SchemaProblem]);
        let table: [Row; 8] = [
            (&[("system", "s"), ("user", "u"), ("assistant", "a")], &[]),
            (&[("user", "u"), ("assistant", "a"), ("user", "u2"), ("assistant", "a2")], &[]),
            (&[("text", "raw text")], &[]),
            (&[("user", "u"), ("assistant", "  ")], &[EmptyTurn { turn: 1 }]),
            (&[("assistant", "a"), ("user", "u"), ("assistant", "a")], &[RoleOrder { turn: 0 }]),
            (&[("user", "u"), ("system", "s"), ("assistant", "a")], &[RoleOrder { turn: 1 }]),
            (&[("user", "u"), ("tool", "t"), ("assistant", "a")], &[UnknownRole { turn: 1 }]),
            (&[("system", "s"), ("user", "u")], &[MissingAssistant]),
        ];
        for (turns, expected) in table {
            assert_eq!(check(&example(turns)), expected, "{turns:?}");
        }
    }

    #[test]
    fn problems_describe_the_turn_and_role() {
        let e = example(&[("user", "u"), ("tool", "t"), ("assistant", "a")]);
        assert_eq!(SchemaProblem::UnknownRole { turn: 1 }.describe(&e), "turn 1 has unknown role `tool`");
    }
}
