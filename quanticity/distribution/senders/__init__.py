"""Platform senders: Discord (discord.py), Telegram (python-telegram-bot) and the local log."""
