"""The chat's widgets, one a module; llmtui.tui.app composes them."""

from llmtui.tui.widgets.attachments import AttachmentBar
from llmtui.tui.widgets.chat_log import ChatLog
from llmtui.tui.widgets.message import MessageView, code_blocks, stats_line
from llmtui.tui.widgets.prompt_input import PromptArea
from llmtui.tui.widgets.sidebar import Sidebar
from llmtui.tui.widgets.status_bar import StatusBar
from llmtui.tui.widgets.thinking import ThinkingView
from llmtui.tui.widgets.tool_call import ToolCallView

__all__ = ["AttachmentBar", "ChatLog", "MessageView", "PromptArea", "Sidebar", "StatusBar",
           "ThinkingView", "ToolCallView", "code_blocks", "stats_line"]
