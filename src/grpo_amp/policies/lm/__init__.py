"""How a causal LM is run for the transformer policy: one interface, two implementations.

    backend.py     the interface: prompt (each prompt once), extend (teacher forcing), decode (sampling)
    hf.py          any transformers causal LM through its own forward (bf16 autocast on CUDA)
    lean.py        a plain Llama on the CPU: the same maths without HF's per-call overhead
    model.py       build_model: the one LlamaConfig of the project (the policy and the benchmarks)
    checkpoint.py  save and load HF checkpoint directories (safetensors only), with their checks
"""
