"""Personal data in UJET chats: what each field is, how it is treated, and the guards."""
