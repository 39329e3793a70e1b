"""The full-screen chat: conversations, streaming Markdown replies, model switching,
a model manager, themes, a command palette and a help screen.

Keyboard-first; every binding has an id, so ``<config>/keymap.toml`` can move it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import tomllib
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message as UIMessage
from textual.screen import Screen
from textual.widgets import Footer

from llmtui.errors import LlmtuiError
from llmtui.history import Conversation, History, Message, title_from
from llmtui.tui.commands import ChatCommands
from llmtui.tui.screens import (
    Confirm,
    ErrorModal,
    FilePicker,
    HelpScreen,
    ModelManager,
    ModelPicker,
    Prompt,
    SettingsScreen,
    ToolApproval,
    ToolsScreen,
)
from llmtui.tui.voice import ChatVoice
from llmtui.tui.widgets import (
    AttachmentBar,
    ChatLog,
    MessageView,
    PromptArea,
    Sidebar,
    StatusBar,
    ToolCallView,
    code_blocks,
)

MAX_ATTACHMENT = 2 * 1024 * 1024  # bytes of text per attached file
SAVE_EVERY = 0.5  # seconds between saves of a streaming reply


class ChatApp(App[None]):
    """The chat: it owns the state (conversation, pending files, daemon) and the actions;
    the widgets in llmtui/tui/widgets show it, the screens in llmtui/tui/screens ask."""

    CSS_PATH = "app.tcss"
    TITLE = "llmtui"
    COMMANDS = {ChatCommands}
    ENABLE_COMMAND_PALETTE = True

    # The prompt is a TextArea, which owns ctrl+a/e/d/k/u/w/x/y/z/c/v; app keys avoid them.
    BINDINGS = [
        Binding("ctrl+n", "new_chat", "New chat", id="chat.new"),
        Binding("escape", "stop", "Stop reply", id="chat.stop"),
        Binding("ctrl+r", "regenerate", "Regenerate", id="chat.regenerate"),
        Binding("ctrl+g", "edit_last", "Edit last", id="chat.edit"),
        Binding("ctrl+o", "attach", "Attach file", id="chat.attach"),
        Binding("ctrl+l", "pick_model", "Model", id="chat.model"),
        Binding("f3", "manager", "Models", id="app.manager"),
        Binding("f4", "settings", "Settings", id="chat.settings"),
        Binding("f2", "rename", "Rename", id="chat.rename", show=False),
        Binding("f8", "delete_chat", "Delete chat", id="chat.delete", show=False),
        Binding("ctrl+f", "search", "Search", id="chat.search", show=False),
        Binding("ctrl+b", "toggle_sidebar", "Sidebar", id="app.sidebar", show=False),
        Binding("ctrl+s", "export('md')", "Export", id="chat.export", show=False),
        Binding("alt+c", "copy_code", "Copy code", id="chat.copy_code", show=False),
        Binding("ctrl+t", "next_theme", "Theme", id="app.theme", show=False),
        Binding("f5", "push_to_talk", "Talk", id="chat.talk", show=False),
        Binding("f9", "read_aloud", "Read aloud", id="chat.read_aloud", show=False),
        Binding("alt+t", "tools", "Tools", id="chat.tools", show=False),
        Binding("f1,question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit"),
    ]

    DESCRIPTIONS = {
        "new_chat": "Start a new conversation",
        "stop": "Stop the reply being written",
        "regenerate": "Write the last reply again",
        "edit_last": "Put the last message back in the input to edit and resend",
        "attach": "Attach a file to the next message",
        "pick_model": "Switch this conversation's model",
        "manager": "Model manager: pull, delete, unload, what fits",
        "settings": "System prompt, temperature, context length and seed",
        "rename": "Rename this conversation",
        "delete_chat": "Delete this conversation",
        "search": "Search conversations",
        "toggle_sidebar": "Show or hide the conversation list",
        "export('md')": "Export this conversation as Markdown",
        "copy_code": "Copy the last reply's last code block (or the reply)",
        "next_theme": "Next theme",
        "push_to_talk": "Speak into the message box (until a pause, or F5)",
        "read_aloud": "Read replies aloud (on/off)",
        "tools": "Tools for the model: files, shell, MCP servers",
        "help": "List every key",
        "quit": "Quit",
    }

    def __init__(self, backend: Any, history: History, settings: Any, *,
                 model: str | None = None, attachment: tuple[str, str] | None = None,
                 conversation: str | None = None, tools: list[str] | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.history = history
        self.settings = settings
        cfg = settings.config
        self.default_model = model or str(cfg.get("default_model"))
        self.forced_model = model
        self.defaults = {"temperature": cfg.get("temperature"),
                         "num_ctx": cfg.get("context_length"), "seed": cfg.get("seed")}
        self.conv: Conversation | None = None
        self.open_conversation = conversation
        self.pending: list[dict[str, Any]] = []
        #: RAG collection answering each conversation ("" for one not saved yet): /rag NAME
        self.rag: dict[str, str] = {}
        if attachment is not None:
            self.pending.append({"name": attachment[0], "text": attachment[1]})
        self.model_names: list[str] = []
        self.loaded: set[str] = set()
        self.daemon_state = "starting"
        self.context_length: int | None = None
        self.last_usage = 0
        self.last_drafts: tuple[int, int] | None = None  # guesses, kept (last reply)
        self.generating = False  # a reply is being written (its message exists)
        self.sending = False  # Enter was pressed; the reply has not begun yet
        self.keymap_file = Path(settings.paths.config_dir) / "keymap.toml"
        self.voice = ChatVoice(settings)
        #: tools offered to the model (Alt+T, /tools): sources picked, the ToolSet they make,
        #: the MCP servers running for it, "auto"/"required"/a tool's name for the next
        #: reply, and the approvals given this session ("always for this tool")
        self.tool_sources: list[str] = []
        self._start_tools = list(tools or [])  # `llm chat --tools`
        self.toolset: Any = None
        self.tool_choice = "auto"
        self._mcp: Any = None
        from llmtui.tools.approval import Approver

        self.approver = Approver(show=lambda line: None)
        self._load_themes()

    # -- set-up -------------------------------------------------------------------------

    @property
    def main(self) -> Screen[Any]:
        """The chat screen, even while a dialog is on top (workers update it then too)."""
        return self.screen_stack[0] if self.screen_stack else self.screen

    def _load_themes(self) -> None:
        from llmtui.tui.themes import DEFAULT, load_themes

        themes, self.theme_problems = load_themes(self.settings)
        for theme in themes:
            self.register_theme(theme)
        wanted = str(self.settings.config.get("theme") or DEFAULT)
        if wanted == "dark":  # the config's historical default
            wanted = DEFAULT
        self.theme = wanted if wanted in self.available_themes else DEFAULT

    def compose(self) -> ComposeResult:
        newline = ["shift+enter", "ctrl+j", "alt+enter"]
        with Horizontal(id="body"):
            yield Sidebar(id="sidebar")
            with Vertical(id="main"):
                yield ChatLog(id="messages")
                yield AttachmentBar("", id="attachments", classes="empty")
                yield PromptArea(newline, id="prompt", soft_wrap=True, show_line_numbers=False)
        yield StatusBar("", id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self._apply_keymap()
        for problem in self.theme_problems:
            self.notify(problem, title="Theme", severity="warning")
        self._show_attachments()
        self.main.query_one("#prompt").focus()
        convs = self.history.list()
        if self.open_conversation:
            await self.load_conversation(self.history.resolve(self.open_conversation))
        elif convs and not self.pending and not self.forced_model:
            await self.load_conversation(convs[0].id)
        else:
            await self.new_conversation()
        self.connect()
        if self._start_tools:
            self.set_tools(self._start_tools, "auto")
        self.set_interval(5.0, self.poll_status)

    def _apply_keymap(self) -> None:
        if not self.keymap_file.exists():
            return
        try:
            data = tomllib.loads(self.keymap_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            self.notify(f"{self.keymap_file.name}: {exc}", title="Keymap", severity="error")
            return
        ids = {b.id for b in self.BINDINGS if isinstance(b, Binding) and b.id}
        bad = [k for k in data if k not in ids or not isinstance(data[k], str)]
        if bad:
            self.notify(f"{self.keymap_file.name}: unknown binding ids or values: "
                        f"{', '.join(bad)} (F1 lists the ids)", title="Keymap",
                        severity="warning")
        self.set_keymap({k: v for k, v in data.items() if k in ids and isinstance(v, str)})

    def binding_rows(self) -> list[tuple[str, str, str, str]]:
        """(action, description, key as the keymap has it now, binding id) for each binding:
        one table for the palette and the help screen."""
        keymap = getattr(self, "_keymap", {}) or {}
        return [(b.action, self.DESCRIPTIONS.get(b.action, b.description),
                 keymap.get(b.id, b.key) if b.id else b.key, b.id or "")
                for b in self.BINDINGS if isinstance(b, Binding)]

    # -- daemon --------------------------------------------------------------------------

    @work(exclusive=True, group="connect")
    async def connect(self) -> None:
        try:
            await self.backend.connect()
            self.daemon_state = "running"
            await self.refresh_models()
        except LlmtuiError as exc:
            self.daemon_state = "down"
            self.show_error("The daemon is not available",
                            f"{exc}\n\nStart it with `llm daemon start`, or see `llm daemon "
                            "logs`. The chat retries when you send a message.")
        self.update_status()

    async def refresh_models(self) -> None:
        models = await self.backend.models()
        self.model_names = [m["name"] for m in models]
        self.loaded = {m["name"] for m in await self.backend.loaded()}
        if self.conv and self.conv.model and self.conv.model not in self.model_names:
            self.notify(f"'{self.conv.model}' is not installed: pull it from the model "
                        "manager (F3) or pick another (Ctrl+L)", title="Model missing",
                        severity="warning", timeout=8)
        self.update_status()

    async def poll_status(self) -> None:
        if self.generating:
            return
        try:
            await self.backend.status()
            self.loaded = {m["name"] for m in await self.backend.loaded()}
            self.daemon_state = "running"
        except LlmtuiError:
            self.daemon_state = "down"
        self.update_status()

    def update_status(self) -> None:
        model = self.conv.model if self.conv else self.default_model
        ctx = self.context_length or (self.conv.options.get("num_ctx") if self.conv else None) \
            or self.defaults.get("num_ctx")
        with contextlib.suppress(NoMatches, ScreenStackError):  # a worker ends at shutdown
            self.main.query_one(StatusBar).show(
                model=model, loaded=model in self.loaded, used=self.last_usage, context=ctx,
                state="generating…" if self.generating else self.daemon_state,
                rag=self.rag.get(self.conv.id if self.conv else ""), drafts=self.last_drafts,
                read_aloud=self.voice.read_aloud, tools=len(self.toolset or ()))

    def show_error(self, title: str, message: str) -> None:
        self.push_screen(ErrorModal(title, message))

    # -- conversations -------------------------------------------------------------------

    async def new_conversation(self) -> None:
        self.conv = Conversation(id="", title="New chat", model=self.default_model)
        self.last_usage = 0
        await self.render_conversation()
        await self.refresh_sidebar()

    def _ensure_saved(self, first_text: str) -> Conversation:
        assert self.conv is not None
        if not self.conv.id:
            made = self.history.create(title=title_from(first_text), model=self.conv.model,
                                       system=self.conv.system, options=self.conv.options)
            made.messages = self.conv.messages
            self.conv = made
        return self.conv

    async def load_conversation(self, conv_id: str) -> None:
        self.conv = self.history.get(conv_id)
        if self.forced_model and not self.conv.messages:
            self.conv.model = self.forced_model
        self.last_usage = 0
        for m in reversed(self.conv.messages):
            if m.stats.get("prompt_eval_count") is not None:
                self.last_usage = int(m.stats["prompt_eval_count"]) + int(
                    m.stats.get("eval_count") or 0)
                break
        await self.render_conversation()
        await self.refresh_sidebar()

    async def render_conversation(self) -> None:
        await self.main.query_one(ChatLog).show(self.conv)
        self.update_status()

    async def refresh_sidebar(self, search: str | None = None) -> None:
        await self.main.query_one(Sidebar).show(self.history.list(search or None),
                                                self.conv.id if self.conv else None)

    @on(Sidebar.Chosen)
    async def conversation_chosen(self, event: Sidebar.Chosen) -> None:
        if self.generating:
            self.notify("stop the reply first (Esc)", severity="warning")
            return
        await self.load_conversation(event.conv_id)
        self.main.query_one("#prompt").focus()

    @on(Sidebar.Searched)
    async def search_changed(self, event: Sidebar.Searched) -> None:
        await self.refresh_sidebar(event.text)

    # -- sending and streaming -----------------------------------------------------------

    def action_send(self) -> None:
        area = self.main.query_one("#prompt", PromptArea)
        text = area.text.strip()
        if not text and not self.pending:
            return
        if self.generating or self.sending:
            self.notify("a reply is still being written (Esc stops it)", severity="warning")
            return
        area.clear()
        if text == "/rag" or text.startswith("/rag "):
            self.attach_rag(text[4:].strip())
            return
        if text == "/tools" or text.startswith("/tools "):
            self.tools_command(text[6:].strip())
            return
        if text == "/image" or text.startswith("/image "):
            self.attach_images(text[6:].strip())
            return
        from llmtui.tui.images import pasted_images

        dropped = pasted_images(text)
        if dropped:  # a path pasted or dropped into the terminal: attach, do not send
            for path in dropped:
                self.attach_path(path)
            return
        self.sending = True  # now, not when the worker starts: a second Enter must wait
        self.send(text)

    def attach_images(self, arg: str) -> None:
        """`/image PATH`: attach an image to the next message."""
        if not arg:
            self.notify("usage: /image PATH (PNG, JPEG, WebP or GIF), for a vision model",
                        title="Image")
            return
        from llmtui.tui.images import pasted_images

        paths = pasted_images(arg) or [Path(arg.strip("'\"")).expanduser()]
        for path in paths:
            self.attach_path(path)

    @work(group="rag")
    async def attach_rag(self, name: str) -> None:
        """`/rag NAME` answers this conversation from a collection; `/rag off` stops."""
        key = self.conv.id if self.conv else ""
        if not name:
            current = self.rag.get(key)
            self.notify(f"answering from '{current}' (/rag off to stop)" if current
                        else "usage: /rag NAME (see `llm rag ls`); /rag off", title="RAG")
            return
        if name in ("off", "none"):
            self.rag.pop(key, None)
            self.notify("no longer answering from a collection", title="RAG")
            self.update_status()
            return
        try:
            from llmtui.rag.index import check_name

            info = await self.backend.rag_collection(check_name(name))
        except LlmtuiError as exc:
            self.notify(str(exc), title="RAG", severity="error")
            return
        self.rag[key] = name
        self.notify(f"answering from '{name}': {len(info.get('files') or [])} files, "
                    f"{info.get('chunks', 0)} chunks; replies cite their sources",
                    title="RAG")
        self.update_status()

    @work(exclusive=True, group="chat")
    async def send(self, text: str) -> None:
        unsaved = self.rag.pop("", None) if self.conv and not self.conv.id else None
        conv = self._ensure_saved(text or self.pending[0]["name"])
        if unsaved:
            self.rag[conv.id] = unsaved
        user = Message(role="user", content=text, attachments=self.pending)
        self.pending = []
        self._show_attachments()
        self.history.add(conv.id, user)
        conv.messages.append(user)
        try:
            await self.refresh_sidebar()
            await self.main.query_one(ChatLog).add(MessageView(user))
            await self.reply()
        finally:
            self.sending = False

    def _request_messages(self) -> list[dict[str, Any]]:
        assert self.conv is not None
        msgs = [m.for_model(self.history.image_bytes) for m in self.conv.messages if m.sends]
        if self.conv.system:
            msgs.insert(0, {"role": "system", "content": self.conv.system})
        return msgs

    def _options(self) -> dict[str, Any]:
        assert self.conv is not None
        opts = {k: v for k, v in self.defaults.items() if v is not None}
        if opts.get("seed", -1) < 0:
            opts.pop("seed", None)
        opts.update(self.conv.options)
        max_tokens = int(self.settings.config.get("max_tokens"))
        if max_tokens > 0:
            opts.setdefault("num_predict", max_tokens)
        for key in ("top_p", "top_k", "min_p", "repeat_penalty"):
            opts.setdefault(key, self.settings.config.get(key))
        return opts

    async def reply(self) -> None:
        """Stream the assistant's reply. With tools on (Alt+T), run the calls it makes, each
        once approved, and stream the next turn with their results, for a bounded number
        of rounds (the last offers no tools, so it ends in words)."""
        from llmtui.tools.loop import MAX_ROUNDS, forced_schema

        conv = self.conv
        assert conv is not None and conv.id
        self.generating = True  # before the first await: the reply exists from here on
        try:
            toolset = None if self.rag.get(conv.id) else self.toolset
            for rnd in range(MAX_ROUNDS + 1):
                extra: dict[str, Any] = {}
                if toolset and rnd < MAX_ROUNDS:
                    extra["tools"] = toolset.specs()
                    if rnd == 0 and conv.messages and conv.messages[-1].role == "user":
                        try:  # a forced call: the grammar of issue 15
                            forced = forced_schema(toolset, self.tool_choice)
                        except LlmtuiError as exc:
                            self.notify(str(exc), title="Tools", severity="error")
                            forced = None
                        if forced is not None:
                            extra["format"] = forced
                calls = await self._reply_turn(extra)
                if not calls:
                    break
                await self._run_calls(toolset, calls)
        finally:
            self.generating = False
            self.update_status()

    async def _reply_turn(self, extra: dict[str, Any]) -> list[dict[str, Any]]:
        """Stream one turn into a new message, saving as it goes; the tool calls it made."""
        conv = self.conv
        assert conv is not None and conv.id
        request = self._request_messages()
        msg = Message(role="assistant", content="", model=conv.model, partial=True)
        calls: list[dict[str, Any]] = []
        self.history.add(conv.id, msg)
        conv.messages.append(msg)
        view = MessageView(msg, live=True)
        log = self.main.query_one(ChatLog)
        await log.add(view)
        self.update_status()
        self._voice_reply_started()
        last_save = time.monotonic()
        collection = self.rag.get(conv.id)
        chunks: list[dict[str, Any]] = []
        if collection:
            question = request[-1]["content"]
            history = [{k: v for k, v in m.items() if k != "images"}  # RAG answers text
                       for m in request[:-1] if m["role"] != "system"]
            parts = self.backend.rag_chat(collection, conv.model, question, history,
                                          self._options())
        else:
            parts = self.backend.chat(conv.model, request, self._options(), **extra)
        try:
            async for part in parts:
                if "chunks" in part:
                    chunks = part["chunks"]
                thought = (part.get("message") or {}).get("thinking") or ""
                if thought:
                    await view.think(thought)
                piece = (part.get("message") or {}).get("content") or ""
                if piece:
                    msg.content += piece
                    self.voice.feed(piece)
                    await view.write(piece)
                    log.follow()
                if time.monotonic() - last_save > SAVE_EVERY:
                    self.history.save(msg)
                    last_save = time.monotonic()
                calls += (part.get("message") or {}).get("tool_calls") or []
                if part.get("done"):
                    msg.stats = {k: v for k, v in part.items()
                                 if k.endswith(("_count", "_duration")) or k == "done_reason"}
            if chunks:  # the citations stay with the reply, in the history too
                footer = "\n\n**Sources:** " + " · ".join(
                    f"[{i}] `{c['citation']}`" for i, c in enumerate(chunks, 1))
                msg.content += footer
                await view.write(footer)
            msg.partial = False
            if calls:
                msg.stats["tool_calls"] = calls
            self.voice.reply_ended()
            self.last_usage = int(msg.stats.get("prompt_eval_count") or 0) + int(
                msg.stats.get("eval_count") or 0)
            self.last_drafts = (int(msg.stats.get("draft_count") or 0),
                                int(msg.stats.get("draft_accepted_count") or 0))
        except asyncio.CancelledError:
            msg.partial = False
            msg.stats = {"stopped": True, "words": len(msg.content.split())}
            raise
        except LlmtuiError as exc:
            msg.partial = False
            msg.stats = {"error": str(exc).splitlines()[0][:200]}
            self._explain(exc)
        finally:
            aclose = getattr(parts, "aclose", None)
            if aclose is not None:  # a stopped reply ends its HTTP stream now, not at GC
                with contextlib.suppress(Exception):
                    await aclose()
            at_end = log.at_end()
            await view.finish()
            if at_end:  # the stats line below the reply comes into view
                log.end_after_refresh()
            if view.thought:
                msg.stats["thinking"] = view.thought  # kept with the reply, and sent back
            self.history.save(msg)
            if calls and not msg.content and not view.thought:
                await view.remove()  # its calls are shown, folded, with their results
            self.update_status()
            if self.context_length is None:
                self._context_of(conv.model)
        return calls

    async def _run_calls(self, toolset: Any, calls: list[dict[str, Any]]) -> None:
        """Run the model's calls, each once approved (the dialog asks unless the tool is
        allowed for the session), and keep each result as a folded "tool" message."""
        from llmtui.tools.core import CallRecord
        from llmtui.tools.loop import parse_call

        conv = self.conv
        assert conv is not None and conv.id
        log = self.main.query_one(ChatLog)
        for call in calls:
            name, args, rejected = parse_call(toolset, call)
            record: CallRecord
            if rejected is not None:
                record = rejected
            else:
                tool = toolset.tools[name]
                settled = self.approver.settled(tool, can_ask=True)
                if settled is None:
                    answer = await self.push_screen_wait(
                        ToolApproval(name, tool.description, args, tool.always_ask))
                    settled = self.approver.answered(tool, answer)
                ok, why = settled
                record = await asyncio.to_thread(toolset.call, name, args) if ok else \
                    CallRecord(name, args, why, "denied")
            result = Message(role="tool", content=record.result, model=conv.model, stats={
                "tool_name": name, "arguments": args, "status": record.status,
                "seconds": round(record.seconds, 3)})
            self.history.add(conv.id, result)
            conv.messages.append(result)
            await log.add(ToolCallView(result))

    @work(group="context")
    async def _context_of(self, model: str) -> None:
        try:
            for m in await self.backend.loaded():
                if m["name"] == model and m.get("context_length"):
                    self.context_length = int(m["context_length"])
            self.loaded = {m["name"] for m in await self.backend.loaded()}
        except LlmtuiError:
            pass
        self.update_status()

    def _explain(self, exc: LlmtuiError) -> None:
        from llmtui.errors import (
            BusyError,
            ContextOverflow,
            DaemonUnavailable,
            ModelNotFound,
        )

        if isinstance(exc, ModelNotFound):
            self.show_error("Model not installed", f"{exc}\n\nOpen the model manager (F3) "
                            "to pull it, or switch model (Ctrl+L).")
        elif isinstance(exc, DaemonUnavailable):
            self.daemon_state = "down"
            self.show_error("Lost the daemon", f"{exc}\n\nThe part of the reply that "
                            "arrived is kept. Send again to restart the daemon, or run "
                            "`llm daemon logs` to see why it stopped.")
        elif isinstance(exc, ContextOverflow):
            self.show_error("Too long for the context", f"{exc}\n\nStart a new chat "
                            "(Ctrl+N) or raise the context length in settings (F4).")
        elif isinstance(exc, BusyError):
            self.notify(str(exc), title="Busy", severity="warning")
        elif "memory" in str(exc).lower():
            self.show_error("Not enough memory", f"{exc}\n\nUnload other models in the "
                            "model manager (F3) or pick a smaller model (Ctrl+L).")
        else:
            self.notify(str(exc), title="Error", severity="error", timeout=10)

    def action_stop(self) -> None:
        self.voice.stop()  # Esc also silences a reply being read aloud
        if self.generating:
            self.workers.cancel_group(self, "chat")

    # -- voice ------------------------------------------------------------------------------

    class Heard(UIMessage):
        """Push-to-talk's transcript (or its error), posted from the recording thread."""

        def __init__(self, text: str, error: str | None = None) -> None:
            super().__init__()
            self.text = text
            self.error = error

    def action_push_to_talk(self) -> None:
        if self.voice.recording:
            self.voice.stop_recording.set()
            return
        missing = self.voice.speech_missing()
        if missing:
            self.notify(missing, title="Voice", severity="warning", timeout=8)
            return
        self.voice.stop()
        self.notify("listening… (stops at a pause, or F5)", title="Voice")
        self._record()

    @work(exclusive=True, group="voice", thread=True)
    def _record(self) -> None:
        try:
            self.post_message(self.Heard(self.voice.record()))
        except LlmtuiError as exc:
            self.post_message(self.Heard("", str(exc)))

    def on_chat_app_heard(self, event: Heard) -> None:
        if event.error:
            self.notify(event.error, title="Voice", severity="warning")
            return
        prompt = self.main.query_one("#prompt", PromptArea)
        prompt.insert(("" if not prompt.text or prompt.text.endswith((" ", "\n")) else " ")
                      + event.text)
        prompt.focus()

    def action_read_aloud(self) -> None:
        if not self.voice.read_aloud:
            missing = self.voice.voice_missing()
            if missing:
                self.notify(missing, title="Voice", severity="warning", timeout=8)
                return
        self.voice.read_aloud = not self.voice.read_aloud
        if not self.voice.read_aloud:
            self.voice.stop()
        self.notify("replies are read aloud (F9: off)" if self.voice.read_aloud
                    else "reading aloud is off", title="Voice")
        self.update_status()

    def _voice_reply_started(self) -> None:
        try:
            self.voice.reply_started()
        except LlmtuiError as exc:  # no speaker: say so once and stop reading aloud
            self.voice.read_aloud = False
            self.notify(str(exc), title="Voice", severity="error", timeout=8)

    async def on_unmount(self) -> None:
        self.voice.close()
        if self._mcp is not None:  # the MCP servers end with the chat
            await asyncio.to_thread(self._mcp.close)

    # -- tools ------------------------------------------------------------------------------

    BUILTIN_TOOLS = ("fs", "shell", "plugins")

    @property
    def _mcp_json(self) -> Path:
        return Path(self.settings.paths.config_dir) / "mcp.json"

    def _tool_sources(self) -> tuple[list[tuple[str, str]], str | None]:
        """What Alt+T offers: the built-in groups and the MCP servers of mcp.json (or why
        mcp.json could not be read)."""
        from llmtui.tools.mcp import load_config

        sources = [("fs", f"Files: read and list files below {Path.cwd()}"),
                   ("shell", "Shell: run a command in that folder (asks every time)"),
                   ("plugins", "Plugins: the tools of installed llmtui plugins")]
        try:
            sources += [(name, f"MCP server {name}: {spec.describe()}")
                        for name, spec in load_config(self._mcp_json).items()]
        except LlmtuiError as exc:
            return sources, str(exc)
        return sources, None

    def action_tools(self) -> None:
        sources, problem = self._tool_sources()

        def done(result: dict[str, Any] | None) -> None:
            if result is not None:
                self.set_tools(result["sources"], result["choice"])
        self.push_screen(ToolsScreen(sources, self.tool_sources, self.tool_choice, problem),
                         done)

    def tools_command(self, arg: str) -> None:
        """`/tools` opens the picker (Alt+T); `/tools fs,shell,SERVER [required|TOOL]` sets
        the tools (and forces a call in the next reply); `/tools off`."""
        words = arg.split()
        if not words:
            self.action_tools()
        elif words[0] in ("off", "none"):
            self.set_tools([], "auto")
        else:
            self.set_tools([w for w in words[0].split(",") if w],
                           words[1] if len(words) > 1 else "auto")

    def _warn(self, line: str) -> None:
        """A line from the MCP host (a server that failed), from any thread."""
        text = line.removeprefix("llm: ")
        try:
            self.call_from_thread(self.notify, text, title="MCP", severity="warning",
                                  timeout=10)
        except RuntimeError:  # already on the app's thread
            self.notify(text, title="MCP", severity="warning", timeout=10)

    @work(exclusive=True, group="tools")
    async def set_tools(self, sources: list[str], choice: str) -> None:
        """Make the ToolSet for these sources: the MCP servers start now (in a thread, the
        chat goes on) and run until the tools change or the chat ends."""
        from llmtui.errors import InvalidInput
        from llmtui.tools import ToolSet
        from llmtui.tools.builtin import builtin_tools
        from llmtui.tools.loop import forced_schema
        from llmtui.tools.mcp import McpHost, load_config

        if self.generating:
            self.notify("stop the reply first (Esc)", severity="warning")
            return
        old, self._mcp = self._mcp, None
        self.toolset, self.tool_sources, self.tool_choice = None, [], "auto"
        if old is not None:
            await asyncio.to_thread(old.close)
        toolset = ToolSet()
        host = None
        try:
            builtin = [s for s in sources if s in self.BUILTIN_TOOLS]
            if builtin:
                toolset.extend(builtin_tools(",".join(builtin), Path.cwd()))
            servers = [s for s in sources if s not in self.BUILTIN_TOOLS]
            if servers:
                configured = load_config(self._mcp_json)
                unknown = [s for s in servers if s not in configured]
                if unknown:
                    raise InvalidInput(f"'{unknown[0]}' is not a built-in tool group "
                                       f"({', '.join(self.BUILTIN_TOOLS)}) nor an MCP "
                                       "server in mcp.json (see `llm mcp list`)")
                host = McpHost([configured[s] for s in servers], warn=self._warn)
                await asyncio.to_thread(host.__enter__)
                toolset.extend(host.tools())
            forced_schema(toolset, choice)  # a forced call must name a tool offered
        except LlmtuiError as exc:
            if host is not None:
                await asyncio.to_thread(host.close)
            self.notify(str(exc), title="Tools", severity="error", timeout=10)
            self.update_status()
            return
        self._mcp = host
        self.toolset, self.tool_sources, self.tool_choice = toolset or None, sources, choice
        if toolset:
            forced = "" if choice == "auto" else f"; the next reply must call {choice}"
            self.notify(f"{len(toolset)} tools: {', '.join(toolset.names())}{forced}. "
                        "Each call asks first.", title="Tools")
        else:
            self.notify("no tools", title="Tools")
        self.update_status()

    async def action_regenerate(self) -> None:
        if self.generating or not self.conv or not self.conv.messages:
            return
        last = self.conv.messages[-1]
        if last.role != "assistant" or last.id is None:
            return
        self.history.delete_from(self.conv.id, last.id)
        self.conv.messages.pop()
        views = self.main.query(MessageView)
        if views:
            await views.last().remove()
        self.regenerate()

    @work(exclusive=True, group="chat")
    async def regenerate(self) -> None:
        await self.reply()

    async def action_edit_last(self) -> None:
        if self.generating or not self.conv:
            return
        users = [m for m in self.conv.messages if m.role == "user"]
        if not users or users[-1].id is None:
            return
        last = users[-1]
        assert last.id is not None
        self.history.delete_from(self.conv.id, last.id)
        idx = self.conv.messages.index(last)
        self.conv.messages = self.conv.messages[:idx]
        self.pending = last.attachments
        self._show_attachments()
        await self.render_conversation()
        area = self.main.query_one("#prompt", PromptArea)
        area.text = last.content
        area.focus()

    # -- attachments ---------------------------------------------------------------------

    def action_attach(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self.attach_path(path)
        self.push_screen(FilePicker(Path.cwd()), chosen)

    def attach_path(self, path: Path) -> None:
        from llmtui.media import detect

        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_ATTACHMENT + 1)
                if detect(data):
                    from llmtui.config import parse_size

                    limit = parse_size(self.settings.config.get("max_image_size"))
                    data += fh.read(max(0, limit + 1 - len(data)))
                    if len(data) > limit:
                        self.notify(f"{path.name} is larger than {limit:,} bytes "
                                    "(max_image_size)", severity="error")
                        return
        except OSError as exc:
            self.notify(f"cannot read {path.name}: {exc.strerror or exc}", severity="error")
            return
        if detect(data):  # an image: kept by hash with the conversation, shown as a preview
            try:
                self.pending.append(self.history.add_image(data, path.name))
            except LlmtuiError as exc:
                self.notify(str(exc), severity="error")
                return
            self._show_attachments()
            self.main.query_one("#prompt").focus()
            return
        if b"\x00" in data[:8192]:
            self.notify(f"{path.name} is not text, nor a PNG, JPEG, WebP or GIF image",
                        severity="error")
            return
        if len(data) > MAX_ATTACHMENT:
            self.notify(f"{path.name} is larger than 2 MB; only text files that fit the "
                        "context make sense", severity="error")
            return
        text = data.decode("utf-8", "replace")
        self.pending.append({"name": path.name, "text": text})
        self._show_attachments()
        self.main.query_one("#prompt").focus()

    def _show_attachments(self) -> None:
        self.main.query_one(AttachmentBar).show(self.pending)

    # -- models and settings -------------------------------------------------------------

    def action_pick_model(self) -> None:
        self.pick_model()

    @work(exclusive=True, group="picker")
    async def pick_model(self) -> None:
        try:
            models = await self.backend.models()
            self.loaded = {m["name"] for m in await self.backend.loaded()}
        except LlmtuiError as exc:
            self._explain(exc)
            return
        current = self.conv.model if self.conv else self.default_model
        choice = await self.push_screen_wait(ModelPicker(models, self.loaded, current))
        if choice:
            self.use_model(choice)

    def use_model(self, name: str) -> None:
        if not self.conv:
            return
        self.conv.model = name
        self.context_length = None
        if self.conv.id:
            self.history.update(self.conv.id, model=name)
        self.notify(f"now chatting with {name}", title="Model")
        self.update_status()

    def action_manager(self) -> None:
        def done(choice: str | None) -> None:
            if choice:
                self.use_model(choice)
            self.run_worker(self.refresh_models(), exclusive=True, group="refresh")
        self.push_screen(ModelManager(self.backend), done)

    def action_settings(self) -> None:
        if not self.conv:
            return
        conv = self.conv

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            conv.system = result["system"]
            conv.options = result["options"]
            if conv.id:
                self.history.update(conv.id, system=conv.system, options=conv.options)
            self.context_length = None
            self.notify("settings saved for this conversation", title="Settings")
            self.update_status()
        self.push_screen(SettingsScreen(conv.system, conv.options, self.defaults), done)

    # -- conversation actions ------------------------------------------------------------

    async def action_new_chat(self) -> None:
        if self.generating:
            self.notify("stop the reply first (Esc)", severity="warning")
            return
        await self.new_conversation()
        self.main.query_one("#prompt").focus()

    def action_rename(self) -> None:
        if not self.conv or not self.conv.id:
            self.notify("send a message first; new chats are saved then", severity="warning")
            return
        conv = self.conv

        async def done(title: str | None) -> None:
            if title and title.strip():
                self.history.update(conv.id, title=title)
                conv.title = title.strip()
                await self.refresh_sidebar()
        self.push_screen(Prompt("Rename conversation", conv.title), done)

    def action_delete_chat(self) -> None:
        if not self.conv or not self.conv.id or self.generating:
            return
        conv = self.conv

        async def done(yes: bool | None) -> None:
            if yes:
                self.history.delete(conv.id)
                self.notify(f"deleted '{conv.title}'", title="Conversations")
                await self.new_conversation()
        self.push_screen(Confirm(f"Delete '{conv.title}'? This cannot be undone."), done)

    def action_search(self) -> None:
        self.main.query_one(Sidebar).focus_search()

    def action_toggle_sidebar(self) -> None:
        self.main.query_one("#sidebar").toggle_class("hidden")

    def action_export(self, fmt: str = "md") -> None:
        import json

        if not self.conv or not self.conv.id:
            self.notify("nothing to export yet", severity="warning")
            return
        conv = self.history.get(self.conv.id)
        stem = re.sub(r"[^\w.-]+", "-", conv.title).strip("-")[:40] or conv.id
        path = Path.cwd() / f"{stem}.{fmt}"
        text = conv.to_markdown() if fmt == "md" else json.dumps(
            conv.to_json(), indent=2, ensure_ascii=False) + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror}", severity="error")
            return
        self.notify(f"exported to {path}", title="Export")

    def action_import_json(self) -> None:
        import json

        async def chosen(path: Path | None) -> None:
            if path is None:
                return
            try:
                conv = self.history.import_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, LlmtuiError) as exc:
                self.notify(f"cannot import {path.name}: {exc}", severity="error")
                return
            await self.load_conversation(conv.id)
            self.notify(f"imported '{conv.title}'", title="Import")
        self.push_screen(FilePicker(Path.cwd()), chosen)

    def action_copy_code(self) -> None:
        if not self.conv:
            return
        replies = [m for m in self.conv.messages if m.role == "assistant" and m.content]
        if not replies:
            return
        blocks = code_blocks(replies[-1].content)
        text = blocks[-1] if blocks else replies[-1].content
        self.copy_to_clipboard(text)  # OSC 52: works over SSH and in tmux
        what = "code block" if blocks else "reply"
        self.notify(f"copied the last {what} ({len(text)} characters)", title="Clipboard")

    # -- themes and help -----------------------------------------------------------------

    def set_theme(self, name: str) -> None:
        self.theme = name

    def watch_theme(self, name: str) -> None:
        """Remember the theme in the config, whichever way it was changed."""
        if not self.is_running:
            return
        try:
            from llmtui.config import Config

            cfg = Config.load(self.settings.paths.config_file)
            if cfg.values.get("theme") != name:
                cfg.set("theme", name)
                cfg.save()
        except LlmtuiError as exc:
            self.notify(f"theme not saved: {exc}", severity="warning")

    def action_next_theme(self) -> None:
        from llmtui.tui.themes import load_themes

        ours = [t.name for t in load_themes(self.settings)[0]]
        names = ours or sorted(self.available_themes)
        idx = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(idx + 1) % len(names)]
        self.notify(f"theme: {self.theme}", title="Theme")

    def action_help(self) -> None:
        rows = [(key, desc, bid) for _, desc, key, bid in self.binding_rows()]
        rows += [("enter", "Send the message", "(input)"),
                 ("shift+enter, ctrl+j, alt+enter", "New line in the message", "(input)"),
                 ("ctrl+p", "Command palette: every action, theme and model", "(app)")]
        self.push_screen(HelpScreen(rows))
