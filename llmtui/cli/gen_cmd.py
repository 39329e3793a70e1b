"""Pipe commands: run, summarize, translate, ask. stdin + arguments form the prompt;
stdout carries only the model's text; progress, stats and errors go to stderr."""

from __future__ import annotations

import typer

from llmtui.cli.common import (
    DESCRIBE_PROMPT,
    CtxOpt,
    FormatOpt,
    ImageOpt,
    JsonOpt,
    MaxOpt,
    ModelOpt,
    Quiet,
    SeedOpt,
    SystemOpt,
    TempOpt,
    TruncOpt,
    VerboseOpt,
    build_options,
    compose,
    emit_result,
    rag_answer,
    read_images,
    read_stdin,
    read_stdin_or_image,
    run_one,
    silence_stdout,
    vision_model,
)
from llmtui.cli.toolrun import (
    AllowToolOpt,
    FunctionsOpt,
    McpOpt,
    RoundsOpt,
    ToolArgs,
    ToolChoiceOpt,
    ToolsOpt,
    YesOpt,
    run_with_tools,
)
from llmtui.errors import InvalidInput


def run(
    args: list[str] = typer.Argument(None, help="[MODEL] [PROMPT...]", show_default=False),
    model: str | None = ModelOpt, system: str | None = SystemOpt,
    temperature: float | None = TempOpt, seed: int | None = SeedOpt,
    max_tokens: int | None = MaxOpt, fmt: str | None = FormatOpt, json_out: bool = JsonOpt,
    ctx: int | None = CtxOpt, truncate: bool = TruncOpt, verbose: bool = VerboseOpt,
    keep_alive: str | None = typer.Option(None, "--keep-alive", help="e.g. 10m, 0, -1."),
    think: bool | None = typer.Option(
        None, "--think/--no-think", show_default=False,
        help="Turn a thinking model's reasoning on or off (default: the model's)."),
    think_level: str | None = typer.Option(
        None, "--think-level", help="Reasoning effort for models that take one: low, "
        "medium or high (implies --think)."),
    hide_thinking: bool = typer.Option(
        False, "--hidethinking", help="Let the model think, but do not show its reasoning."),
    draft: str | None = typer.Option(
        None, "--draft", help="Speculative decoding: lookup, none, or a draft model's name."),
    image: list[str] = ImageOpt,
    tools: str | None = ToolsOpt, functions: list[str] = FunctionsOpt,
    mcp: list[str] = McpOpt, tool_choice: str | None = ToolChoiceOpt,
    allow_tool: list[str] = AllowToolOpt, yes: bool = YesOpt, tool_rounds: int = RoundsOpt,
) -> None:
    """Run a prompt (one-shot with a prompt or stdin) or an interactive session.

    A thinking model's reasoning goes to stderr, framed by "Thinking..." and
    "...done thinking."; stdout carries the answer alone."""
    words = list(args or [])
    if model is None and words:
        model = model_word(words)
    images = read_images(image or [])
    stdin: str | None = None
    if "-" not in (image or []):
        stdin, piped_image = read_stdin_or_image()
        if piped_image is not None:
            images.append(piped_image)
    if images and model is None:
        model = vision_model()
    opts = build_options(model, system, temperature, seed, max_tokens, fmt, ctx, json_out,
                         truncate, verbose)
    opts.hide_thinking = hide_thinking
    if think_level is not None:
        from llmtui.backends.thinking import LEVELS

        if think_level.lower() not in LEVELS or think is False:
            raise InvalidInput("--think-level must be low, medium or high (and goes "
                               "without --no-think)")
        opts.think = think_level.lower()
    elif think is not None:
        opts.think = think
    if draft is not None:
        from llmtui.api.validate import check_options

        opts.options.update(check_options({"draft": draft}))
    if keep_alive is not None:
        from llmtui.engine.manager import parse_keep_alive

        parse_keep_alive(keep_alive)
        opts.keep_alive = keep_alive
    prompt = compose(stdin, " ".join(words))
    targs = ToolArgs(tools, functions or [], mcp or [], tool_choice, allow_tool or [], yes,
                     tool_rounds)
    targs.check()
    if targs.wanted():
        if not prompt and not images:
            if stdin is not None:
                raise InvalidInput("nothing to do: the prompt and stdin are empty")
            from llmtui.cli.repl import repl

            repl(opts, targs)  # the interactive session, with tools
            return
        user: dict[str, object] = {"role": "user", "content": prompt or DESCRIBE_PROMPT}
        if images:
            user["images"] = images
        run_with_tools(opts, targs, [user])
        return
    if images:
        run_one(opts, prompt=prompt or DESCRIBE_PROMPT, images=images)
        return
    if stdin is not None or words:
        if not prompt:
            raise InvalidInput("nothing to do: the prompt and stdin are empty")
        run_one(opts, prompt=prompt)
        return
    from llmtui.cli.repl import repl

    repl(opts)


def model_word(words: list[str]) -> str | None:
    """Take the first word as the model when it looks like one (Ollama's `run MODEL ...`);
    one that looks like a model but is not installed is an error, not prompt text."""
    from llmtui.config import Settings
    from llmtui.models.catalog import load_catalog
    from llmtui.models.names import ModelName
    from llmtui.models.suggest import looks_like_model, not_found

    word = words[0]
    store = Settings.load().store()
    installed = [m.name for m in store.models()]
    catalog = list(load_catalog())
    if not looks_like_model(word, installed, catalog, more_words=len(words) > 1):
        return None
    name = str(ModelName.parse(word))
    if name not in installed and name not in catalog:
        raise not_found(word, installed, catalog, prompt=" ".join(words))
    words.pop(0)
    return name


LENGTHS = {"short": "in two or three sentences", "medium": "in one paragraph",
           "long": "in several paragraphs covering every main point"}
#: Token budgets per length, so a model that rambles still stops (--max-tokens overrides).
LENGTH_TOKENS = {"short": 120, "medium": 300, "long": 800}


def summarize(
    text: list[str] = typer.Argument(None, help="Text (default: stdin).", show_default=False),
    length: str = typer.Option("medium", "--length", "-l", help="short, medium or long."),
    bullets: bool = typer.Option(False, "--bullets", "-b", help="A bullet list."),
    model: str | None = ModelOpt, system: str | None = SystemOpt,
    temperature: float | None = TempOpt, seed: int | None = SeedOpt,
    max_tokens: int | None = MaxOpt, fmt: str | None = FormatOpt, json_out: bool = JsonOpt,
    ctx: int | None = CtxOpt, verbose: bool = VerboseOpt,
) -> None:
    """Summarize stdin; long input is summarized in chunks, then combined (map-reduce)."""
    if length not in LENGTHS:
        raise InvalidInput(f"--length must be short, medium or long, not '{length}'")
    body = compose(read_stdin(), " ".join(text or []))
    if not body:
        raise InvalidInput("nothing to summarize: pipe text in or pass it as an argument")
    budget = max_tokens if max_tokens is not None else LENGTH_TOKENS[length]
    opts = build_options(model, system, temperature, seed, budget, fmt, ctx, json_out,
                         False, verbose)
    style = "as a bullet list" if bullets else LENGTHS[length]
    instruction = opts.system or (
        f"You write accurate summaries. Summarize the user's text {style}. "
        "Output only the summary.")
    from llmtui.cli.mapreduce import map_reduce
    from llmtui.cli.session import connect

    with connect() as client:
        try:
            text_out, final = map_reduce(client, opts, body, instruction)
        except Quiet:
            silence_stdout()
            return
        emit_result(opts, text_out, final)


def translate(
    text: list[str] = typer.Argument(None, help="Text (default: stdin).", show_default=False),
    to: str = typer.Option(..., "--to", help="Target language."),
    source: str | None = typer.Option(None, "--from", help="Source language (default: detect)."),
    model: str | None = ModelOpt, temperature: float | None = TempOpt,
    seed: int | None = SeedOpt, max_tokens: int | None = MaxOpt, json_out: bool = JsonOpt,
    ctx: int | None = CtxOpt, truncate: bool = TruncOpt, verbose: bool = VerboseOpt,
) -> None:
    """Translate stdin (or the arguments) into another language."""
    body = compose(read_stdin(), " ".join(text or []))
    if not body:
        raise InvalidInput("nothing to translate: pipe text in or pass it as an argument")
    opts = build_options(model, None, temperature, seed, max_tokens, None, ctx, json_out,
                         truncate, verbose)
    src = f" from {source}" if source else ""
    system = (f"You are a translator. Translate the user's text{src} into {to}. "
              "Output only the translation, nothing else.")
    run_one(opts, messages=[{"role": "system", "content": system},
                            {"role": "user", "content": body}])


def ask(
    question: list[str] = typer.Argument(..., help="The question."),
    model: str | None = ModelOpt, system: str | None = SystemOpt,
    temperature: float | None = TempOpt, seed: int | None = SeedOpt,
    max_tokens: int | None = MaxOpt, fmt: str | None = FormatOpt, json_out: bool = JsonOpt,
    ctx: int | None = CtxOpt, truncate: bool = TruncOpt, verbose: bool = VerboseOpt,
    rag: str | None = typer.Option(None, "--rag", help="Answer from this RAG collection, "
                                   "with citations (see `llm rag`)."),
    k: int = typer.Option(5, "-k", help="With --rag: chunks to retrieve."),
    tools: str | None = ToolsOpt, functions: list[str] = FunctionsOpt,
    mcp: list[str] = McpOpt, tool_choice: str | None = ToolChoiceOpt,
    allow_tool: list[str] = AllowToolOpt, yes: bool = YesOpt, tool_rounds: int = RoundsOpt,
) -> None:
    """Answer a question; piped stdin is the context to answer from."""
    q = " ".join(question).strip()
    if not q:
        raise InvalidInput("the question is empty")
    if rag is not None:
        from llmtui.cli.session import connect
        from llmtui.rag.index import check_name

        check_name(rag)
        opts = build_options(model, system, temperature, seed, max_tokens, None, ctx, False,
                             True, False)
        with connect() as client:
            rag_answer(client, rag, q, k=k, model=opts.model, min_similarity=None,
                   options=opts.options)
        return
    context = read_stdin()
    opts = build_options(model, system, temperature, seed, max_tokens, fmt, ctx, json_out,
                         truncate, verbose)
    sys_prompt = opts.system or ("Answer the question using only the context given. "
                                 "If the context does not contain the answer, say so."
                                 if context else "Answer the question concisely.")
    user = f"Context:\n{context.strip()}\n\nQuestion: {q}" if context and context.strip() else q
    targs = ToolArgs(tools, functions or [], mcp or [], tool_choice, allow_tool or [], yes,
                     tool_rounds)
    targs.check()
    if targs.wanted():
        opts.system = sys_prompt
        run_with_tools(opts, targs, [{"role": "user", "content": user}])
        return
    run_one(opts, messages=[{"role": "system", "content": sys_prompt},
                            {"role": "user", "content": user}])


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_interspersed_args": True})(run)
    app.command("summarize")(summarize)
    app.command("translate")(translate)
    app.command("ask")(ask)



