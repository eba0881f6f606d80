//! Chat sessions; an assistant message can carry refinement step cards (messages pointing at it).

use crate::error::Context;
use crate::sql::{kind, now_ms};
use crate::{AdapterId, ChatId, GenerationId, MessageId, ModelId, Store, StoreError};
use evolve_core::ParseKindError;
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who wrote a message, with the chat-template role names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

impl fmt::Display for ChatRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChatRole {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::System, Self::User, Self::Assistant]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseKindError {
                what: "chat role",
                value: s.to_string(),
                expected: "system user assistant",
            })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Chat {
    pub id: ChatId,
    pub title: String,
    pub model_id: Option<ModelId>,
    pub adapter_id: Option<AdapterId>,
    pub created_at: i64,
    /// Bumped by every new message, so recent chats sort first.
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewMessage {
    pub chat_id: ChatId,
    pub role: ChatRole,
    pub content: String,
    pub generation_id: Option<GenerationId>,
    /// Set on a refinement step card: the assistant message it refines.
    pub refinement_of: Option<MessageId>,
    pub step_index: i64,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub role: ChatRole,
    pub content: String,
    pub generation_id: Option<GenerationId>,
    pub refinement_of: Option<MessageId>,
    pub step_index: i64,
    pub score: Option<f64>,
    pub created_at: i64,
}

fn chat_from_row(row: &Row) -> rusqlite::Result<Chat> {
    Ok(Chat {
        id: row.get("id")?,
        title: row.get("title")?,
        model_id: row.get("model_id")?,
        adapter_id: row.get("adapter_id")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

fn message_from_row(row: &Row) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get("id")?,
        chat_id: row.get("chat_id")?,
        role: kind(row, "role")?,
        content: row.get("content")?,
        generation_id: row.get("generation_id")?,
        refinement_of: row.get("refinement_of")?,
        step_index: row.get("step_index")?,
        score: row.get("score")?,
        created_at: row.get("created_at")?,
    })
}

impl Store {
    pub fn create_chat(
        &self,
        title: &str,
        model: Option<ModelId>,
        adapter: Option<AdapterId>,
    ) -> Result<ChatId, StoreError> {
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO chats (title, model_id, adapter_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![title, model, adapter, now],
            )
            .context(|| format!("creating chat '{title}'"))?;
        Ok(ChatId(self.conn.last_insert_rowid()))
    }

    pub fn get_chat(&self, id: ChatId) -> Result<Option<Chat>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT * FROM chats WHERE id = ?1", [id], chat_from_row)
            .optional()?)
    }

    /// Chats, most recently active first.
    pub fn list_chats(&self) -> Result<Vec<Chat>, StoreError> {
        self.query_list(
            "SELECT * FROM chats ORDER BY updated_at DESC, id DESC",
            [],
            chat_from_row,
        )
    }

    /// Appends a message and bumps the chat's `updated_at`, atomically.
    pub fn add_message(&self, m: &NewMessage) -> Result<MessageId, StoreError> {
        let now = now_ms();
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO messages (chat_id, role, content, generation_id, refinement_of, step_index, score, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                m.chat_id,
                m.role.as_str(),
                m.content,
                m.generation_id,
                m.refinement_of,
                m.step_index,
                m.score,
                now
            ],
        )
        .context(|| format!("adding {} message to chat {}", m.role, m.chat_id))?;
        let id = MessageId(tx.last_insert_rowid());
        tx.execute(
            "UPDATE chats SET updated_at = ?2 WHERE id = ?1",
            params![m.chat_id, now],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Messages of a chat in the order they were added; step cards are grouped under their
    /// assistant message by `refinement_of`, not by position.
    pub fn messages_of(&self, chat: ChatId) -> Result<Vec<Message>, StoreError> {
        self.query_list(
            "SELECT * FROM messages WHERE chat_id = ?1 ORDER BY id",
            [chat],
            message_from_row,
        )
    }
}
