import BerthDaemon

await BerthdMain.main()
