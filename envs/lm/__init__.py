"""The language-model game: :mod:`.game` (``LMGame``), :mod:`.env` (its Gymnasium front-end),
:mod:`.hf` (Hugging Face loading, generation and the reward-model oracle) and :mod:`.builtin`
(the built-in model, made in code). The text judges it plays with are in :mod:`prefzoo.envs.judges`."""
