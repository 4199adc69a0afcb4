"""The sandbox's drives: OneDrives and SharePoint site libraries (store, access, resources, items, sites,
upload, sessions, links, sharing, search, workbook comments). Routes: `drive.routes.routes()`."""
