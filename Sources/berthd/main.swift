import BerthDaemon

await BerthdMain.start()
