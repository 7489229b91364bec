import BerthCtl
BerthCtlMain.main()
