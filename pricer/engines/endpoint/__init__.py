"""The endpoint engine: price items by asking a served model (vLLM, SGLang, TGI, llama.cpp, `transformers serve`)
through its OpenAI-compatible /v1/completions, with the in-process path's prompts and greedy decoding, bounded
concurrency, retries of transient failures only, and answers stored as they arrive so a killed run resumes."""
