import type { ChannelType } from '../api/types'

export interface Example {
  id: string
  title: string
  lang: string
  code: string
}

/** Ready-to-copy calls through a group's endpoint: curl, and the provider's official SDK. */
export function examples(channel: ChannelType, endpoint: string, model: string, proxyKey: string): Example[] {
  const m = model && model !== '-' ? model : ''
  switch (channel) {
    case 'openai':
      return [
        { id: 'curl', title: 'curl', lang: 'bash', code: `curl ${endpoint}/v1/chat/completions \\\n  -H "Authorization: Bearer ${proxyKey}" \\\n  -H "Content-Type: application/json" \\\n  -d '{"model": "${m || 'gpt-4.1-nano'}", "messages": [{"role": "user", "content": "Hello"}]}'` },
        { id: 'sdk', title: 'OpenAI SDK (Python)', lang: 'python', code: `from openai import OpenAI\n\nclient = OpenAI(base_url="${endpoint}/v1", api_key="${proxyKey}")\nreply = client.chat.completions.create(\n    model="${m || 'gpt-4.1-nano'}",\n    messages=[{"role": "user", "content": "Hello"}],\n)\nprint(reply.choices[0].message.content)` },
      ]
    case 'openai-response':
      return [
        { id: 'curl', title: 'curl', lang: 'bash', code: `curl ${endpoint}/v1/responses \\\n  -H "Authorization: Bearer ${proxyKey}" \\\n  -H "Content-Type: application/json" \\\n  -d '{"model": "${m || 'gpt-4.1-nano'}", "input": "Hello"}'` },
        { id: 'sdk', title: 'OpenAI SDK (Python)', lang: 'python', code: `from openai import OpenAI\n\nclient = OpenAI(base_url="${endpoint}/v1", api_key="${proxyKey}")\nreply = client.responses.create(model="${m || 'gpt-4.1-nano'}", input="Hello")\nprint(reply.output_text)` },
      ]
    case 'anthropic':
      return [
        { id: 'curl', title: 'curl', lang: 'bash', code: `curl ${endpoint}/v1/messages \\\n  -H "x-api-key: ${proxyKey}" \\\n  -H "anthropic-version: 2023-06-01" \\\n  -H "Content-Type: application/json" \\\n  -d '{"model": "${m || 'claude-3-haiku-20240307'}", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello"}]}'` },
        { id: 'sdk', title: 'Anthropic SDK (Python)', lang: 'python', code: `import anthropic\n\nclient = anthropic.Anthropic(base_url="${endpoint}", api_key="${proxyKey}")\nreply = client.messages.create(\n    model="${m || 'claude-3-haiku-20240307'}",\n    max_tokens=256,\n    messages=[{"role": "user", "content": "Hello"}],\n)\nprint(reply.content[0].text)` },
      ]
    case 'gemini':
      return [
        { id: 'curl', title: 'curl', lang: 'bash', code: `curl "${endpoint}/v1beta/models/${m || 'gemini-2.0-flash-lite'}:generateContent" \\\n  -H "x-goog-api-key: ${proxyKey}" \\\n  -H "Content-Type: application/json" \\\n  -d '{"contents": [{"parts": [{"text": "Hello"}]}]}'` },
        { id: 'sdk', title: 'Google Gen AI SDK (Python)', lang: 'python', code: `from google import genai\n\nclient = genai.Client(api_key="${proxyKey}", http_options={"base_url": "${endpoint}"})\nreply = client.models.generate_content(model="${m || 'gemini-2.0-flash-lite'}", contents="Hello")\nprint(reply.text)` },
        { id: 'openai', title: 'OpenAI SDK (Python)', lang: 'python', code: `from openai import OpenAI\n\nclient = OpenAI(base_url="${endpoint}/v1beta/openai", api_key="${proxyKey}")\nreply = client.chat.completions.create(\n    model="${m || 'gemini-2.0-flash-lite'}",\n    messages=[{"role": "user", "content": "Hello"}],\n)\nprint(reply.choices[0].message.content)` },
      ]
  }
}
