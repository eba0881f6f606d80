//! [`LlamaEngine`] as the engine-independent [`Generator`].

use crate::LlamaError;
use crate::engine::LlamaEngine;
use evolve_core::{
    ChatMessage, Completion, FollowUp, GenerateError, GenerationEvent, GenerationRequest, Generator,
};

impl From<LlamaError> for GenerateError {
    fn from(e: LlamaError) -> Self {
        if let LlamaError::Request { request, source } = e {
            return GenerateError::InvalidRequest {
                request,
                reason: source.to_string(),
            };
        }
        GenerateError::Engine(Box::new(e))
    }
}

impl Generator for LlamaEngine {
    fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        Ok(LlamaEngine::format_chat(self, messages)?)
    }

    fn generate_batch(
        &mut self,
        requests: &[GenerationRequest],
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, GenerateError> {
        Ok(LlamaEngine::generate_batch(self, requests, events)?)
    }

    fn generate_chains(
        &mut self,
        requests: &[GenerationRequest],
        follow: &mut dyn FnMut(usize, &[Completion]) -> Option<FollowUp>,
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, GenerateError> {
        Ok(LlamaEngine::generate_chains(
            self, requests, follow, events,
        )?)
    }

    fn use_adapter(
        &mut self,
        path: Option<&std::path::Path>,
        scale: f32,
    ) -> Result<(), GenerateError> {
        let id = path.map(|p| self.load_adapter(p)).transpose()?;
        Ok(self.set_adapter(id, scale)?)
    }
}
