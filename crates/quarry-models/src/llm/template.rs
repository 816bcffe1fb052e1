//! Chat templates: the Jinja template a GGUF carries (`tokenizer.chat_template`, as written for
//! Hugging Face tokenizers) rendered with minijinja; ChatML when a file has none.

use minijinja::{context, Environment, ErrorKind};
use quarry_core::Message;

use crate::error::{Error, Result};

pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + \
                      '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

impl ChatTemplate {
    /// `source`: the template text (None: ChatML). `bos`/`eos`: the tokens templates may refer to.
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.unwrap_or(CHATML).to_string())
            .map_err(|e| Error::Generation(format!("chat template does not parse: {e}")))?;
        Ok(ChatTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// The prompt text for `messages`, ending with the header of the assistant's turn.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Generation(format!("chat template: {e}")))?;
        let msgs: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        tmpl.render(context! {
            messages => msgs,
            add_generation_prompt => true,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        })
        .map_err(|e| Error::Generation(format!("chat template rendering failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_by_default_and_hf_style_templates() {
        let msgs = [Message::system("Be brief."), Message::user("Hi?")];
        let t = ChatTemplate::new(None, "<s>", "</s>").expect("chatml");
        assert_eq!(
            t.render(&msgs).expect("render"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
        );
        // Templates written for transformers use bos_token, Python string methods and raise_exception.
        let src = "{{ bos_token }}{% for m in messages %}{% if m['role'] not in ['system', 'user'] %}\
                   {{ raise_exception('bad role') }}{% endif %}[{{ m['role'].upper() }}] {{ m['content'].strip() }}\n\
                   {% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>").expect("hf");
        let msgs = [Message::user("  padded  ")];
        assert_eq!(t.render(&msgs).expect("render"), "<s>[USER] padded\n[ASSISTANT]");
        let e = t.render(&[Message::assistant("x")]).expect_err("raises").to_string();
        assert!(e.contains("bad role"), "{e}");
        assert!(ChatTemplate::new(Some("{% for %}"), "", "").is_err());
    }
}
