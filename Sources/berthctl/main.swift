import BerthCtl

BerthCtlMain.main()
