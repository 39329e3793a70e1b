"""The chat's screens and dialogs, one a module; llmtui.tui.app pushes them."""

from llmtui.tui.screens.confirm import Confirm
from llmtui.tui.screens.error import ErrorModal
from llmtui.tui.screens.file_picker import FilePicker
from llmtui.tui.screens.help import HelpScreen
from llmtui.tui.screens.model_manager import ModelManager
from llmtui.tui.screens.model_picker import ModelPicker
from llmtui.tui.screens.settings import SettingsScreen
from llmtui.tui.screens.text_prompt import Prompt
from llmtui.tui.screens.tools import ToolApproval, ToolsScreen

__all__ = ["Confirm", "ErrorModal", "FilePicker", "HelpScreen", "ModelManager", "ModelPicker",
           "Prompt", "SettingsScreen", "ToolApproval", "ToolsScreen"]
